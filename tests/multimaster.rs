//! Rules 3 and 4 driven round by round on a sync with two sources: no echo, and
//! every conflict shape resolved per key with the expected winner.

use belt::daemon::session::Session;
use belt::engine::{run_round, Conflict, ConflictKind, RoundOptions, RoundResult, Snapshot, Strategy};
use belt::pg::deadline::DEFAULT_STALL_TIMEOUT;
use belt::pg::introspect::TableName;
use tokio_postgres::Client;

use crate::support::{assert_same, count, rows, Pair, DST, SRC};

/// Two sources, driven one round at a time.
pub struct Both {
    pub pair: Pair,
    pub session: Session,
    pub positions: [Option<Snapshot>; 2],
    pub a: Client,
    pub b: Client,
    pub opts: RoundOptions,
}

impl Both {
    pub async fn new(schema: &str, tables: &[&str], strategy: Strategy) -> Both {
        let pair = Pair::new(schema).await;
        let names: Vec<TableName> = tables
            .iter()
            .map(|t| TableName {
                schema: "public".into(),
                name: t.to_string(),
            })
            .collect();
        let specs = [pair.spec("a", SRC), pair.spec("b", DST)];
        let session = Session::open(
            "app",
            [&specs[0], &specs[1]],
            [true, true],
            &names,
            DEFAULT_STALL_TIMEOUT,
            belt::capture::doorbell::DEFAULT_LEASE,
        )
        .await
        .unwrap();
        let (a, b) = (pair.src().await, pair.dst().await);
        let opts = RoundOptions {
            strategy,
            ..RoundOptions::default()
        };
        Both {
            pair,
            session,
            positions: [None, None],
            a,
            b,
            opts,
        }
    }

    pub async fn round(&mut self) -> RoundResult {
        let r = run_round(
            &mut self.session.sides,
            &self.session.plans,
            &self.session.sequences,
            &self.positions,
            &self.opts,
            &|| false,
        )
        .await
        .unwrap();
        self.positions = r.positions.clone().expect("round completed");
        r
    }

    /// Rounds until one moves nothing; returns how many rounds that took.
    pub async fn settle(&mut self) -> usize {
        for n in 1..=10 {
            if !self.round().await.did_work() {
                return n;
            }
        }
        panic!("still moving rows after 10 rounds: echo?");
    }

    /// Delta rows of `table` on each side (read as the superuser: the application
    /// cannot see schema belt).
    pub async fn pending_deltas(&self, table: &str) -> (i64, i64) {
        let delta = format!("belt.\"{}\"", self.delta(table).await);
        let (a, b) = (self.pair.admin(SRC).await, self.pair.admin(DST).await);
        (count(&a, &delta).await, count(&b, &delta).await)
    }

    async fn delta(&self, table: &str) -> String {
        self.pair
            .admin(SRC)
            .await
            .query_one("select belt.delta_name('public', $1)", &[&table])
            .await
            .unwrap()
            .get(0)
    }

    /// Makes every pending change of `table` on both sides carry the same timestamp.
    pub async fn tie(&self, table: &str) {
        let sql = format!(
            "update belt.\"{}\" set belt_changed_at = '2020-01-01 00:00:00+00'",
            self.delta(table).await
        );
        self.pair.admin(SRC).await.batch_execute(&sql).await.unwrap();
        self.pair.admin(DST).await.batch_execute(&sql).await.unwrap();
    }
}

const KV: &str = "create table t (id int primary key, v text)";

async fn one_conflict(strategy: Strategy, first_writes: &str, second_writes: &str) -> (Both, Vec<Conflict>) {
    let mut both = Both::new(KV, &["t"], strategy).await;
    both.a
        .batch_execute("insert into t values (1, 'base'), (2, 'other')")
        .await
        .unwrap();
    both.settle().await;
    both.a.batch_execute(first_writes).await.unwrap();
    both.b.batch_execute(second_writes).await.unwrap();
    let r = both.round().await;
    (both, r.conflicts)
}

async fn value(c: &Client, id: i32) -> Option<String> {
    c.query_opt("select v from t where id = $1", &[&id])
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test]
async fn ping_pong_converges_without_echo() {
    let mut both = Both::new(KV, &["t"], Strategy::Latest).await;
    both.a
        .batch_execute("insert into t select i, 'a' from generate_series(1, 100) i")
        .await
        .unwrap();
    both.b
        .batch_execute("insert into t select i, 'b' from generate_series(101, 200) i")
        .await
        .unwrap();
    let first = both.round().await;
    assert_eq!(first.rows_into, [100, 100]);
    both.a
        .batch_execute("update t set v = 'a2' where id > 150")
        .await
        .unwrap();
    both.b
        .batch_execute("delete from t where id <= 10")
        .await
        .unwrap();
    let rounds = both.settle().await;
    assert!(rounds <= 2, "settled after {rounds} rounds");
    assert_same(&both.pair, "t").await;
    assert_eq!(count(&both.a, "t").await, 190);
    assert_eq!(
        both.pending_deltas("t").await,
        (0, 0),
        "applied rows must not be captured again"
    );
}

#[tokio::test]
async fn update_update_goes_to_the_later_write() {
    let (both, conflicts) = one_conflict(
        Strategy::Latest,
        "update t set v = 'a' where id = 1",
        "update t set v = 'b' where id = 1",
    )
    .await;
    assert_eq!(value(&both.a, 1).await.as_deref(), Some("b"));
    assert_same(&both.pair, "t").await;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].key, "1");
    assert_eq!(conflicts[0].winner.as_deref(), Some("b"));
    assert_eq!(conflicts[0].kind, ConflictKind::UpdateUpdate);
    assert!(conflicts[0].first_changed_at < conflicts[0].second_changed_at);
}

#[tokio::test]
async fn update_then_later_delete_deletes() {
    let (both, conflicts) = one_conflict(
        Strategy::Latest,
        "update t set v = 'a' where id = 1",
        "delete from t where id = 1",
    )
    .await;
    assert_eq!(value(&both.a, 1).await, None);
    assert_same(&both.pair, "t").await;
    assert_eq!(conflicts[0].winner.as_deref(), Some("b"));
    assert_eq!(conflicts[0].kind, ConflictKind::UpdateDelete);
}

#[tokio::test]
async fn delete_then_later_update_keeps_the_row() {
    let (both, _) = one_conflict(
        Strategy::Latest,
        "delete from t where id = 1",
        "update t set v = 'b' where id = 1",
    )
    .await;
    assert_eq!(value(&both.a, 1).await.as_deref(), Some("b"));
    assert_same(&both.pair, "t").await;
}

#[tokio::test]
async fn delete_delete_leaves_it_deleted() {
    let (both, conflicts) = one_conflict(
        Strategy::Latest,
        "delete from t where id = 1",
        "delete from t where id = 1",
    )
    .await;
    assert_eq!(count(&both.a, "t").await, 1);
    assert_same(&both.pair, "t").await;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].kind, ConflictKind::DeleteDelete);
}

#[tokio::test]
async fn insert_insert_goes_to_the_later_write() {
    let (both, conflicts) = one_conflict(
        Strategy::Latest,
        "insert into t values (5, 'a')",
        "insert into t values (5, 'b')",
    )
    .await;
    assert_eq!(value(&both.a, 5).await.as_deref(), Some("b"));
    assert_same(&both.pair, "t").await;
    assert_eq!(
        conflicts[0].key, "5",
        "an insert/insert collision is recorded, never silent"
    );
    assert_eq!(
        conflicts[0].kind,
        ConflictKind::InsertInsert,
        "two inserts of one key are their own kind, not an edit of one row"
    );
    assert_eq!(
        conflicts[0].loser_row.as_deref(),
        Some(r#"{"id":5,"v":"a"}"#),
        "the losing row is kept in the record"
    );
}

#[tokio::test]
async fn a_tie_goes_to_the_first_database() {
    let mut both = Both::new(KV, &["t"], Strategy::Latest).await;
    both.a
        .batch_execute("insert into t values (1, 'a')")
        .await
        .unwrap();
    both.b
        .batch_execute("insert into t values (1, 'b')")
        .await
        .unwrap();
    both.tie("t").await;
    let r = both.round().await;
    assert_eq!(value(&both.b, 1).await.as_deref(), Some("a"));
    assert_eq!(r.conflicts[0].winner.as_deref(), Some("a"));
    assert_eq!(
        r.conflicts[0].loser_row.as_deref(),
        Some(r#"{"id":1,"v":"b"}"#),
        "the second database's losing row is kept"
    );
}

#[tokio::test]
async fn conflicts_are_decided_per_key_not_per_table() {
    let mut both = Both::new(KV, &["t"], Strategy::Latest).await;
    both.a
        .batch_execute("insert into t values (1, 'base'), (2, 'base')")
        .await
        .unwrap();
    both.settle().await;
    both.a
        .batch_execute("update t set v = 'a-early' where id = 1")
        .await
        .unwrap();
    both.b
        .batch_execute("update t set v = 'b-mid' where id in (1, 2)")
        .await
        .unwrap();
    both.a
        .batch_execute("update t set v = 'a-late' where id = 2")
        .await
        .unwrap();
    let r = both.round().await;
    // Key 1: b is newer. Key 2: a is newer, although a's table-wide newest change
    // and b's interleave (Bucardo's per-table ranking would pick one side for both).
    assert_eq!(value(&both.a, 1).await.as_deref(), Some("b-mid"));
    assert_eq!(value(&both.a, 2).await.as_deref(), Some("a-late"));
    assert_same(&both.pair, "t").await;
    let winners: Vec<_> = r
        .conflicts
        .iter()
        .map(|c| (c.key.as_str(), c.winner.as_deref()))
        .collect();
    assert_eq!(winners, vec![("1", Some("b")), ("2", Some("a"))]);
}

#[tokio::test]
async fn strategies_source_target_and_skip() {
    let (both, c) = one_conflict(
        Strategy::Source,
        "update t set v = 'a' where id = 1",
        "update t set v = 'b' where id = 1",
    )
    .await;
    assert_eq!(
        value(&both.b, 1).await.as_deref(),
        Some("a"),
        "source: the first database wins"
    );
    assert_eq!(c[0].winner.as_deref(), Some("a"));
    drop(both);

    let (both, c) = one_conflict(
        Strategy::Target,
        "update t set v = 'a' where id = 1",
        "update t set v = 'b' where id = 1",
    )
    .await;
    assert_eq!(
        value(&both.a, 1).await.as_deref(),
        Some("b"),
        "target: the second database wins"
    );
    assert_eq!(c[0].winner.as_deref(), Some("b"));
    drop(both);

    let (both, c) = one_conflict(
        Strategy::Skip,
        "update t set v = 'a' where id = 1",
        "update t set v = 'b' where id = 1",
    )
    .await;
    assert_eq!(
        value(&both.a, 1).await.as_deref(),
        Some("a"),
        "skip: both keep their row"
    );
    assert_eq!(value(&both.b, 1).await.as_deref(), Some("b"));
    assert_eq!(c[0].winner, None);
}

#[tokio::test]
async fn strategy_abort_stops_before_writing() {
    let mut both = Both::new(KV, &["t"], Strategy::Abort).await;
    both.a
        .batch_execute("insert into t values (1, 'base')")
        .await
        .unwrap();
    both.settle().await;
    both.a
        .batch_execute("update t set v = 'a' where id = 1; insert into t values (7, 'a')")
        .await
        .unwrap();
    both.b
        .batch_execute("update t set v = 'b' where id = 1")
        .await
        .unwrap();
    let err = run_round(
        &mut both.session.sides,
        &both.session.plans,
        &both.session.sequences,
        &both.positions,
        &both.opts,
        &|| false,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("conflict on public.t key (1) under strategy abort"),
        "{err}"
    );
    assert_eq!(value(&both.b, 7).await, None, "nothing of the chunk is applied");
    assert_eq!(rows(&both.a, "t").await, vec!["(1,a)", "(7,a)"]);
}

#[tokio::test]
async fn foreign_keys_replicate_both_ways_without_cascading_on_the_receiver() {
    let schema = "create table parent (id int primary key); \
                  create table child (id int primary key, parent_id int references parent (id) on delete cascade)";
    let mut both = Both::new(schema, &["parent", "child"], Strategy::Latest).await;
    both.a
        .batch_execute("insert into parent values (5), (6); insert into child values (50, 5), (51, 5)")
        .await
        .unwrap();
    both.settle().await;
    // b deletes parent 5 (cascading to its children on b); later a moves child 50 to
    // parent 6. The later write keeps child 50; applying b's delete of parent 5 on a
    // must not cascade to it.
    both.b
        .batch_execute("delete from parent where id = 5")
        .await
        .unwrap();
    both.a
        .batch_execute("update child set parent_id = 6 where id = 50")
        .await
        .unwrap();
    both.settle().await;
    for t in ["parent", "child"] {
        assert_same(&both.pair, t).await;
    }
    assert_eq!(rows(&both.a, "child").await, vec!["(50,6)"]);
    assert_eq!(rows(&both.a, "parent").await, vec!["(6)"]);
}

/// A writer on one side: unique inserts plus updates of keys the other side also updates.
async fn write_load(client: Client, first_id: i32, n: i32) {
    for i in 0..n {
        let id = first_id + i;
        client
            .batch_execute(&format!(
                "insert into t values ({id}, 'w{first_id}'); update t set v = 'w{first_id}-{i}' where id = {}",
                1 + i % 20
            ))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn kill_9_during_bidirectional_load_loses_and_doubles_nothing() {
    let pair = Pair::with_config(KV, "chunk_keys: 50\n").await;
    pair.add_sync_with("t", "src:source,dst:source");
    let mut daemon = pair.start_daemon();
    pair.kick_wait();
    pair.src()
        .await
        .batch_execute("insert into t select i, 'seed' from generate_series(1, 20) i")
        .await
        .unwrap();
    pair.kick_wait();

    let a = tokio::spawn(write_load(pair.src().await, 100_000, 1500));
    let b = tokio::spawn(write_load(pair.dst().await, 200_000, 1500));
    let dst = pair.dst().await;
    crate::support::wait_for(60, "replication under load", || async {
        count(&dst, "t where id >= 100000 and id < 200000").await > 300
    })
    .await;
    daemon.kill9();
    let _daemon = pair.start_daemon();
    a.await.unwrap();
    b.await.unwrap();

    let src = pair.src().await;
    crate::support::wait_for(120, "both directions to drain", || async {
        pair.kick_wait();
        let s = pair.status();
        s["pending_rows"] == 0 && count(&src, "t").await == 3020 && count(&dst, "t").await == 3020
    })
    .await;
    assert_same(&pair, "t").await;
    for range in ["id >= 100000 and id < 200000", "id >= 200000"] {
        assert_eq!(
            count(&src, &format!("t where {range}")).await,
            1500,
            "every insert arrives once"
        );
    }
}

#[tokio::test]
async fn an_apply_role_without_replica_rights_is_refused_before_anything_is_written() {
    let pair = Pair::new(KV).await;
    pair.admin(SRC)
        .await
        .batch_execute(&format!(
            "create role app login password 'app-secret'; grant all on t to app; \
             grant create on database {SRC} to app; grant create on database {DST} to app"
        ))
        .await
        .unwrap();
    pair.as_owner(DST, "grant all on t to app").await;
    pair.add_dbs_as("app", "app-secret");
    let out = pair.beltctl(&[
        "add",
        "sync",
        "app",
        "--dbs",
        "src:source,dst:source",
        "--tables",
        "t",
    ]);
    let text = crate::support::text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("GRANT SET ON PARAMETER session_replication_role"),
        "{text}"
    );
    assert!(
        text.contains("rds_superuser") && text.contains("superuser"),
        "{text}"
    );
    assert!(!crate::support::has_belt_schema(&pair.src().await).await);
    assert!(!crate::support::has_belt_schema(&pair.dst().await).await);
}

#[tokio::test]
async fn small_changes_on_both_sides_move_in_one_chunk_and_large_ones_stay_bounded() {
    let mut both = Both::new(KV, &["t"], Strategy::Latest).await;
    both.a
        .batch_execute("insert into t select g, 'a' from generate_series(1, 30) g")
        .await
        .unwrap();
    both.b
        .batch_execute("insert into t select g, 'b' from generate_series(1001, 1030) g")
        .await
        .unwrap();
    let r = both.round().await;
    assert_eq!(r.keys_from, [30, 30]);
    assert_eq!(r.chunks, 1, "both sides' changes fit in one chunk: {r:?}");
    assert!(
        r.consistent,
        "a round within the budget is one transaction per side"
    );

    // Past the limit, a chunk holds at most `chunk_keys` keys of each side, and the
    // round says it was not one transaction.
    both.opts.chunk_keys = 20;
    both.a
        .batch_execute("update t set v = 'a2' where id <= 30")
        .await
        .unwrap();
    both.b
        .batch_execute("update t set v = 'b2' where id > 1000")
        .await
        .unwrap();
    let r = both.round().await;
    assert_eq!(r.keys_from, [30, 30]);
    assert!(r.chunks >= 3, "{r:?}");
    assert!(!r.consistent, "a backlog over the budget is applied in chunks");
    both.settle().await;
    assert_same(&both.pair, "t").await;
}
