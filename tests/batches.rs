//! Rules 1 and 2 driven round by round: late commits are not skipped, and applying
//! the same batch twice changes nothing.

use belt::daemon::session::Session;
use belt::engine::{run_round, RoundOptions, Snapshot};

use crate::support::{assert_same, count, rows, Pair, SRC};

async fn open(pair: &Pair) -> Session {
    pair.open_session(&["t"], [true, false]).await.unwrap()
}

async fn round(s: &mut Session, prev: Option<&Snapshot>) -> Snapshot {
    let positions = [prev.cloned(), None];
    let r = run_round(
        &mut s.sides,
        &s.plans,
        &s.sequences,
        &positions,
        &RoundOptions::default(),
        &|| false,
    )
    .await
    .unwrap();
    let [first, _] = r.positions.expect("round completed");
    first.expect("the source has a position")
}

#[tokio::test]
async fn a_late_commit_is_delivered_by_the_next_round() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    let mut s = open(&pair).await;

    // T1 writes first (smaller txid, earlier delta row) and stays open.
    let t1 = pair.src().await;
    t1.batch_execute("begin; insert into t values (1, 'first written, last committed')")
        .await
        .unwrap();
    // T2 writes after T1 and commits first.
    pair.src()
        .await
        .batch_execute("insert into t values (2, 'written second')")
        .await
        .unwrap();

    let s1 = round(&mut s, None).await;
    assert_eq!(rows(&pair.dst().await, "t").await, vec!["(2,\"written second\")"]);

    t1.batch_execute("commit").await.unwrap();
    round(&mut s, Some(&s1)).await;
    assert_same(&pair, "t").await;
    assert_eq!(count(&pair.dst().await, "t").await, 2, "T1's row must arrive");
}

#[tokio::test]
async fn applying_a_batch_twice_changes_nothing() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    let mut s = open(&pair).await;
    let src = pair.src().await;
    src.batch_execute(
        "insert into t select i, 'v' || i from generate_series(1, 100) i; \
         update t set v = 'changed' where id <= 10; delete from t where id > 90",
    )
    .await
    .unwrap();
    let s1 = round(&mut s, None).await;
    assert_same(&pair, "t").await;

    // A crash between the target's commit and the purge on the source leaves the
    // deltas in place: the same keys come again. Put them back and re-run.
    let admin = pair.admin(SRC).await;
    let delta = delta_of_t(&admin).await;
    admin
        .batch_execute(&format!(
            "insert into belt.\"{delta}\" (id) select generate_series(1, 100)"
        ))
        .await
        .unwrap();
    let before = rows(&pair.dst().await, "t").await;
    round(&mut s, Some(&s1)).await;
    assert_eq!(rows(&pair.dst().await, "t").await, before);
    assert_same(&pair, "t").await;
    assert_eq!(
        count(&admin, &format!("belt.\"{delta}\"")).await,
        0,
        "consumed deltas are purged"
    );
}

#[tokio::test]
async fn a_source_behind_the_stored_position_stops_the_round() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    let mut s = open(&pair).await;
    pair.src()
        .await
        .batch_execute("insert into t values (1, 'x')")
        .await
        .unwrap();
    // As if the position came from before a restore: far ahead of the source's txids.
    let future: Snapshot = "900000000:900000000:".parse().unwrap();
    let positions = [Some(future), None];
    let err = run_round(
        &mut s.sides,
        &s.plans,
        &s.sequences,
        &positions,
        &RoundOptions::default(),
        &|| false,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, belt::engine::EngineError::SourceMoved { .. }),
        "{err}"
    );
    assert!(!err.is_transient(), "a moved source must not be retried silently");
    assert!(
        err.to_string().contains("database 'src' is behind the position"),
        "{err}"
    );
    assert_eq!(count(&pair.dst().await, "t").await, 0, "nothing is applied");
}

#[tokio::test]
async fn belt_vacuums_the_deltas_it_purged() {
    let pair = Pair::new(
        "create table t (id int primary key, v text); \
         insert into t select i, 'v' from generate_series(1, 100) i",
    )
    .await;
    let mut s = open(&pair).await;
    // One delta row per statement, as an application's single-row updates make them:
    // more than the rows after which belt vacuums a delta table.
    let updates: String = (0..2_500)
        .map(|i| format!("update t set v = 'v{i}' where id = {};", i % 100 + 1))
        .collect();
    pair.src().await.batch_execute(&updates).await.unwrap();
    round(&mut s, None).await;
    assert_same(&pair, "t").await;

    // Autovacuum would come a minute later at best; belt's own VACUUM is at once.
    let admin = pair.admin(SRC).await;
    let delta = delta_of_t(&admin).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let vacuumed: bool = admin
            .query_one(
                "select coalesce(vacuum_count, 0) > 0 from pg_stat_user_tables \
                  where schemaname = 'belt' and relname = $1",
                &[&delta],
            )
            .await
            .unwrap()
            .get(0);
        if vacuumed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the delta table was not vacuumed after 2 500 purged rows"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A round reads each changed row by its key, whatever the planner believes of the
/// tables (a delta table's statistics can be far off after a backlog): a few
/// changed rows never cost a scan of the application's whole table.
#[tokio::test]
async fn a_round_reads_changed_rows_by_key_not_the_whole_table() {
    let pair = Pair::new(
        "create table t (id int primary key, v text); \
         insert into t select i, 'v' || i from generate_series(1, 20000) i",
    )
    .await;
    let admin = pair.admin(SRC).await;
    // As a planner that misjudges the sizes would: no nested loop where it has a
    // choice. Set before belt connects.
    admin
        .batch_execute(&format!("alter database {SRC} set enable_nestloop = off"))
        .await
        .unwrap();
    let mut s = open(&pair).await;
    let before = scans_of_t(&admin).await;
    // Each session's counts reach the statistics when it ends.
    let app = pair.src().await;
    app.batch_execute(
        "update t set v = 'one' where id = 1; update t set v = 'two' where id = 500; \
         update t set v = 'three' where id = 20000",
    )
    .await
    .unwrap();
    drop(app);
    round(&mut s, None).await;
    drop(s);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let after = loop {
        let now = scans_of_t(&admin).await;
        // Three rows fetched by the application's updates, three by the round.
        if now.1 >= before.1 + 6 {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the round did not read the three changed rows by key: {before:?} -> {now:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // A sequential read of a few rows is the session's look at the rows' width.
    assert!(
        after.0 - before.0 < 100,
        "the round scanned the table: {before:?} -> {after:?}"
    );
    assert!(
        after.1 - before.1 < 100,
        "the round read more than the changed rows: {before:?} -> {after:?}"
    );
    assert_same(&pair, "t").await;
}

/// The rows of t read by sequential scans, and by index scans.
async fn scans_of_t(admin: &tokio_postgres::Client) -> (i64, i64) {
    let r = admin
        .query_one(
            "select seq_tup_read, coalesce(idx_tup_fetch, 0) from pg_stat_user_tables \
              where relid = 'public.t'::regclass",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

/// The name of table t's delta table, unquoted.
async fn delta_of_t(admin: &tokio_postgres::Client) -> String {
    admin
        .query_one("select belt.delta_name('public', 't')", &[])
        .await
        .unwrap()
        .get(0)
}
