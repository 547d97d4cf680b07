//! A sync never runs in two daemons at once, whatever their catalogs say: the daemon
//! that holds the sync's lock on its first database writes under an epoch that every
//! write transaction checks; another daemon stands by and takes over when the holder
//! is gone (kill -9), or waits for a kick with `takeover: false`.

use belt::daemon::session::Session;
use belt::daemon::SyncError;
use belt::engine::{run_round, RoundOptions};

use crate::support::{assert_same, count, wait_for, Daemon, Pair, DST};

async fn open(pair: &Pair) -> Result<Session, SyncError> {
    pair.open_session(&["t"], [true, false]).await
}

/// One round of `session` from no stored position.
async fn round(session: &mut Session) -> Result<belt::engine::RoundResult, belt::engine::EngineError> {
    run_round(
        &mut session.sides,
        &session.plans,
        &session.sequences,
        &[None, None],
        &RoundOptions::default(),
        &|| false,
    )
    .await
}

#[tokio::test]
async fn a_daemon_that_lost_the_sync_fails_before_it_writes() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    let mut stale = open(&pair).await.unwrap();
    match open(&pair).await {
        Err(e @ SyncError::Standby { .. }) => {
            assert!(e.to_string().contains("pid"), "names the holder: {e}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a second session took a sync that is held"),
    }
    pair.src()
        .await
        .batch_execute("insert into t select g, 'x' from generate_series(1, 10) g")
        .await
        .unwrap();
    // Another daemon took the sync over (its new epoch on the receiving database),
    // while this one still has its sessions: a paused process, a partition healed.
    pair.admin(DST)
        .await
        .batch_execute(
            "update belt.syncs set epoch = epoch + 1, owner = 'belt-syncd on belt-1' where sync = 'app'",
        )
        .await
        .unwrap();
    let err = round(&mut stale).await.unwrap_err();
    let said = belt::pg::error::render(&err);
    assert!(said.contains("fenced") && said.contains("belt-1"), "{said}");
    assert_eq!(
        count(&pair.dst().await, "t").await,
        0,
        "the stale daemon wrote nothing"
    );

    drop(stale);
    let mut owner = loop {
        // The dropped session's lock goes when the server sees it close.
        if let Ok(s) = open(&pair).await {
            break s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    round(&mut owner).await.unwrap();
    assert_same(&pair, "t").await;
}

/// The status of sync `app` in the catalog of the daemon configured by `config`;
/// null until that daemon has applied its plan.
fn status(config: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_beltctl"))
        .arg("-c")
        .arg(config)
        .args(["status", "app", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// Two daemons, each with its own catalog, both told to run sync `app` by one plan.
fn two_daemons(pair: &Pair, b_extra: &str) -> ([std::path::PathBuf; 2], Daemon, Daemon) {
    let plan = pair.app_plan();
    let configs = [pair.other_config("a", ""), pair.other_config("b", b_extra)];
    let a = pair.start_daemon_with(&configs[0], &["--plan", &plan], &[]);
    let b = pair.start_daemon_with(&configs[1], &["--plan", &plan], &[]);
    (configs, a, b)
}

#[tokio::test]
async fn two_daemons_told_to_run_one_sync_run_it_once_and_the_survivor_takes_over() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    let (configs, a, b) = two_daemons(&pair, "");
    wait_for(60, "one daemon replicating, the other standing by", || async {
        let states = [status(&configs[0]), status(&configs[1])].map(|s| s["state"].clone());
        states.contains(&"replicating".into()) && states.contains(&"standby".into())
    })
    .await;
    let (mut holder, survivor, standby) = if status(&configs[0])["state"] == "replicating" {
        (a, b, &configs[1])
    } else {
        (b, a, &configs[0])
    };
    let said = status(standby)["last_error"].to_string();
    assert!(said.contains("runs in another belt-syncd"), "{said}");

    let src = pair.src().await;
    let dst = pair.dst().await;
    for i in 1..=20 {
        src.execute("insert into t values ($1, 'before')", &[&i])
            .await
            .unwrap();
    }
    wait_for(30, "rows through the holder", || async {
        count(&dst, "t").await == 20
    })
    .await;
    assert_eq!(status(standby)["rows_applied"], 0, "the standby applied nothing");

    // The holder dies mid-load; its lock goes with its connection.
    let writer = tokio::spawn({
        let src = pair.src().await;
        async move {
            for i in 21..=400 {
                src.execute("insert into t values ($1, 'during')", &[&i])
                    .await
                    .unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    holder.kill9();
    wait_for(30, "the standby takes over", || async {
        status(standby)["state"] == "replicating"
    })
    .await;
    writer.await.unwrap();
    wait_for(60, "every row", || async { count(&dst, "t").await == 400 }).await;
    let owner: String = pair
        .admin(DST)
        .await
        .query_one("select owner from belt.syncs where sync = 'app'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(owner.contains(&format!("pid {}", survivor.pid())), "{owner}");
    assert_same(&pair, "t").await;
}

#[tokio::test]
async fn with_takeover_off_the_standby_waits_for_a_kick() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    // b starts once a runs the sync, so that a is the holder.
    let plan = pair.app_plan();
    let configs = [
        pair.other_config("a", ""),
        pair.other_config("b", "takeover: false\n"),
    ];
    let mut a = pair.start_daemon_with(&configs[0], &["--plan", &plan], &[]);
    wait_for(60, "a replicating", || async {
        status(&configs[0])["state"] == "replicating"
    })
    .await;
    let _b = pair.start_daemon_with(&configs[1], &["--plan", &plan], &[]);
    wait_for(30, "b standing by", || async {
        status(&configs[1])["state"] == "standby"
    })
    .await;
    a.kill9();
    pair.src()
        .await
        .batch_execute("insert into t values (1, 'after a died')")
        .await
        .unwrap();
    // Several of takeover's 2 s polls: b must not move on its own.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(status(&configs[1])["state"], "standby");
    assert_eq!(count(&pair.dst().await, "t").await, 0);

    pair.beltctl_with(&configs[1], &["kick", "app"]);
    wait_for(30, "b takes over when kicked", || async {
        count(&pair.dst().await, "t").await == 1
    })
    .await;
    assert_same(&pair, "t").await;
}
