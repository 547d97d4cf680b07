//! A two-way sync as an operator runs it: parked rows and retry, conflicts on record,
//! roles changed on a live sync, status per direction.

use crate::support::{assert_same, count, rows, wait_for, Pair};

#[tokio::test]
async fn a_row_that_cannot_be_applied_is_parked_and_retried() {
    let pair = Pair::new("create table u (id int primary key, code text unique)").await;
    pair.add_sync_with("u", "src:source,dst:source");
    let _daemon = pair.start_daemon();
    pair.kick_wait();

    // Different keys, same unique code: neither row fits on the other side.
    pair.src()
        .await
        .batch_execute("insert into u values (1, 'x')")
        .await
        .unwrap();
    pair.dst()
        .await
        .batch_execute("insert into u values (2, 'x')")
        .await
        .unwrap();
    pair.kick_wait();
    pair.src()
        .await
        .batch_execute("insert into u values (3, 'y')")
        .await
        .unwrap();
    pair.kick_wait();

    let status = pair.status();
    assert_eq!(status["parked_rows"], 2, "{status}");
    assert_eq!(status["state"], "replicating", "the sync goes on: {status}");
    assert_eq!(
        count(&pair.dst().await, "u where id = 3").await,
        1,
        "other rows still flow"
    );
    let parked = pair.beltctl_ok(&["list", "parked", "app", "--json"]);
    assert!(
        parked.contains("duplicate key value violates unique constraint"),
        "{parked}"
    );

    // The operator resolves the collision on dst, then retries.
    pair.dst()
        .await
        .batch_execute("delete from u where id = 2")
        .await
        .unwrap();
    pair.beltctl_ok(&["retry", "app"]);
    pair.kick_wait();
    pair.kick_wait();
    assert_eq!(pair.status()["parked_rows"], 0);
    assert_same(&pair, "u").await;
    assert_eq!(rows(&pair.src().await, "u").await, vec!["(1,x)", "(3,y)"]);
}

#[tokio::test]
async fn conflicts_are_on_record_and_roles_change_without_a_copy() {
    // A bound no pair of clocks meets: every round must warn.
    let pair = Pair::with_config(
        "create table t (id int primary key, v text)",
        "max_clock_offset_ms: 0.000001\n",
    )
    .await;
    pair.add_sync_with("t", "src:source,dst:source");
    let daemon = pair.start_daemon();
    pair.kick_wait();
    pair.src()
        .await
        .batch_execute("insert into t values (1, 'base')")
        .await
        .unwrap();
    pair.kick_wait();

    pair.beltctl_ok(&["pause", "app"]);
    wait_for(10, "the sync to pause", || async {
        pair.status()["state"] == "paused"
    })
    .await;
    pair.src()
        .await
        .batch_execute("update t set v = 'src' where id = 1")
        .await
        .unwrap();
    pair.dst()
        .await
        .batch_execute("update t set v = 'dst' where id = 1")
        .await
        .unwrap();
    pair.beltctl_ok(&["resume", "app"]);
    pair.kick_wait();
    assert_same(&pair, "t").await;
    assert_eq!(rows(&pair.src().await, "t").await, vec!["(1,dst)"]);

    let status = pair.status();
    assert_eq!(status["conflicts"], 1, "{status}");
    assert!(status["clock_offset_ms"].as_f64().is_some(), "{status}");
    assert_eq!(status["directions"].as_array().unwrap().len(), 2, "{status}");
    let conflicts: serde_json::Value =
        serde_json::from_str(&pair.beltctl_ok(&["conflicts", "app", "--json"])).unwrap();
    assert_eq!(conflicts[0]["key"], "1", "{conflicts}");
    assert_eq!(conflicts[0]["winner"], "dst", "{conflicts}");
    assert_eq!(conflicts[0]["kind"], "update/update", "{conflicts}");
    assert_eq!(
        conflicts[0]["loser_row"], r#"{"id":1,"v":"src"}"#,
        "the losing write is on record: {conflicts}"
    );
    assert!(
        daemon.log().contains("clocks of the two databases differ"),
        "{}",
        daemon.log()
    );

    // Turn src → dst off: dst's writes still reach src, src's no longer reach dst.
    pair.beltctl_ok(&["update", "sync", "app", "--dbs", "src:target,dst:source"]);
    wait_for(20, "the new roles to be live", || async {
        pair.kick_wait();
        pair.status()["directions"].as_array().unwrap().len() == 1
    })
    .await;
    pair.dst()
        .await
        .batch_execute("insert into t values (2, 'from dst')")
        .await
        .unwrap();
    pair.src()
        .await
        .batch_execute("insert into t values (3, 'from src')")
        .await
        .unwrap();
    pair.kick_wait();
    assert_eq!(count(&pair.src().await, "t where id = 2").await, 1);
    assert_eq!(count(&pair.dst().await, "t where id = 3").await, 0);
}
