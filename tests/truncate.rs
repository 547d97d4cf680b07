//! TRUNCATE: a transaction that truncates and then inserts keeps its rows on the other
//! side, even when it commits between a round's snapshot and the round's chunks.

use crate::support::{assert_same, count, text, wait_for, Pair, DST, SRC};

#[tokio::test]
async fn truncate_then_insert_committed_during_a_round_keeps_its_rows() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    pair.owner(SRC)
        .await
        .batch_execute("grant truncate on t to app_user")
        .await
        .unwrap();
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
