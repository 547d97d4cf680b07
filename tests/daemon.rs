//! The daemon as an operator runs it: changes arrive without a kick, status tells
//! what is going on, SIGTERM stops cleanly.

use crate::support::{assert_same, count, wait_for, Pair, DST};

#[tokio::test]
async fn a_commit_reaches_the_target_by_notification() {
    // The timer poll is ten minutes: only the trigger's NOTIFY can deliver in time.
    let pair = Pair::with_config(
        "create table t (id int primary key, v text)",
        "poll_interval_ms: 600000\n",
    )
    .await;
    pair.add_sync("t");
    let mut daemon = pair.start_daemon();
    pair.kick_wait();

    pair.src()
        .await
        .batch_execute("insert into t values (1, 'hello')")
        .await
        .unwrap();
    let dst = pair.dst().await;
    wait_for(10, "the row to arrive without a kick", || async {
        count(&dst, "t").await == 1
    })
    .await;

    // After a round that moved changes the sources stop listening (the next round
    // comes by the gap); the round after, finding nothing, makes them listen again:
    // the kick's round, the one that moved the row, the one that found nothing.
    wait_for(10, "the round after the row's, which finds nothing", || async {
        pair.status()["rounds"].as_i64().unwrap() >= 3
    })
    .await;
    pair.src()
        .await
        .batch_execute("insert into t values (2, 'heard again')")
        .await
        .unwrap();
    wait_for(
        10,
        "a commit after the sync went back to listening to arrive",
        || async { count(&dst, "t").await == 2 },
    )
    .await;
    assert_same(&pair, "t").await;

    let status = pair.status();
    assert_eq!(status["state"], "replicating", "{status}");
    assert!(status["rounds"].as_i64().unwrap() >= 2, "{status}");
    assert_eq!(status["pending_rows"], 0, "{status}");

    assert!(
        daemon.terminate().success(),
        "SIGTERM must exit 0:\n{}",
        daemon.log()
    );
    assert_eq!(pair.status()["state"], "stopped");
}

#[tokio::test]
async fn a_paused_sync_resumes_where_it_stopped() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    pair.add_sync("t");
    let _daemon = pair.start_daemon();
    pair.kick_wait();

    pair.beltctl_ok(&["pause", "app"]);
    wait_for(10, "the sync to pause", || async {
        pair.status()["state"] == "paused"
    })
    .await;
    let src = pair.src().await;
    src.batch_execute("insert into t select generate_series(1, 50), 'x'")
        .await
        .unwrap();
    assert_eq!(
        count(&pair.dst().await, "t").await,
        0,
        "a paused sync applies nothing"
    );

    pair.beltctl_ok(&["resume", "app"]);
    pair.kick_wait();
    assert_eq!(count(&pair.dst().await, "t").await, 50);
}

#[test]
fn the_demo_ends_with_equal_databases() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_beltctl"))
        .args(["demo", "--seconds", "2"])
        .output()
        .expect("run beltctl demo");
    let text = crate::support::text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches(": equal").count(), 4, "{text}");
}

#[tokio::test]
async fn a_failing_sync_reports_its_error_and_the_others_go_on() {
    let pair = Pair::new("create table t (id int primary key); create table u (id int primary key)").await;
    pair.add_sync("t");
    pair.beltctl_ok(&[
        "add",
        "sync",
        "other",
        "--dbs",
        "src:source,dst:target",
        "--tables",
        "u",
    ]);
    pair.beltctl_ok(&["setup", "other"]);
    pair.as_owner(DST, "drop table u").await;
    let _daemon = pair.start_daemon();

    wait_for(30, "sync 'other' to fail", || async {
        let out = pair.beltctl_ok(&["status", "other", "--json"]);
        let s: serde_json::Value = serde_json::from_str(&out).unwrap();
        s["state"] == "failed"
    })
    .await;
    let out = pair.beltctl_ok(&["status", "other", "--json"]);
    assert!(out.contains("public.u exists in 'src' but not in 'dst'"), "{out}");
    pair.kick_wait(); // capture on t is installed

    pair.src()
        .await
        .batch_execute("insert into t values (1)")
        .await
        .unwrap();
    pair.kick_wait();
    assert_eq!(
        count(&pair.dst().await, "t").await,
        1,
        "sync 'app' must keep replicating"
    );
}

#[tokio::test]
async fn a_dropped_connection_is_retried_until_the_server_is_back() {
    let pair = Pair::new("create table t (id int primary key)").await;
    pair.add_sync("t");
    let _daemon = pair.start_daemon();
    pair.kick_wait();

    pair.cluster.restart_immediate().unwrap();
    pair.src()
        .await
        .batch_execute("insert into t select generate_series(1, 10)")
        .await
        .unwrap();
    pair.kick_wait();
    assert_eq!(count(&pair.dst().await, "t").await, 10);
    let status = pair.status();
    assert_eq!(status["state"], "replicating", "{status}");
}
