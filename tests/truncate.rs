//! TRUNCATE: a transaction that truncates and then inserts keeps its rows on the other
//! side, even when it commits between a round's snapshot and the round's chunks.

use crate::support::{assert_same, count, text, wait_for, Pair, DST, SRC};

#[tokio::test]
async fn truncate_then_insert_committed_during_a_round_keeps_its_rows() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    pair.as_owner(SRC, "grant truncate on t to app_user").await;
    pair.add_sync("t");
    let _daemon = pair.start_daemon();
    pair.kick_wait();

    // Hold the target's table so that the next round stops at its truncate.
    let holder = pair.admin(DST).await;
    holder
        .batch_execute("begin; lock table t in access share mode")
        .await
        .unwrap();
    let app = pair.src().await;
    app.batch_execute("begin; truncate t; insert into t values (2, 'first'); commit")
        .await
        .unwrap();
    let watcher = pair.admin(DST).await;
    wait_for(30, "the round to wait for the target's lock", || async {
        count(
            &watcher,
            "pg_locks where relation = 't'::regclass and not granted",
        )
        .await
            > 0
    })
    .await;
    // Commits after the round's snapshot, before its chunks.
    app.batch_execute("begin; truncate t; insert into t values (1, 'second'); commit")
        .await
        .unwrap();
    holder.batch_execute("commit").await.unwrap();

    let out = pair.beltctl(&["kick", "app", "--wait", "--timeout", "60"]);
    assert!(out.status.success(), "{}", text(&out));
    pair.kick_wait();
    assert_same(&pair, "t").await;
    assert_eq!(count(&pair.dst().await, "t").await, 1);
}

#[tokio::test]
async fn with_two_sources_a_later_write_survives_the_other_sides_truncate() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    pair.as_owner(SRC, "grant truncate on t to app_user").await;
    pair.add_sync_with("t", "src:source,dst:source");
    let mut daemon = pair.start_daemon();
    pair.kick_wait();
    pair.src()
        .await
        .batch_execute("insert into t select g, 'seed' from generate_series(1, 10) g")
        .await
        .unwrap();
    pair.kick_wait();
    assert_same(&pair, "t").await;

    // While belt is stopped: the source truncates, then the target writes.
    daemon.terminate();
    pair.src().await.batch_execute("truncate t").await.unwrap();
    pair.dst()
        .await
        .batch_execute("update t set v = 'later' where id = 5; insert into t values (11, 'later')")
        .await
        .unwrap();
    let _daemon = pair.start_daemon();
    pair.kick_wait();
    pair.kick_wait();
    assert_same(&pair, "t").await;
    let rows = crate::support::rows(&pair.src().await, "t").await;
    assert_eq!(
        rows,
        ["(11,later)", "(5,later)"],
        "the later writes are kept on both sides"
    );
}
