//! A fleet on Kubernetes: daemons that apply the plan themselves (`--plan`), each
//! running only the syncs of its shard; a sync moved to another shard by a plan edit;
//! a pod whose volume is empty rebuilding its catalog from the plan without copying
//! again and without losing a change.

use crate::support::{assert_same, count, get, sample, text, wait_for, Pair, DST, SRC};

const TABLES: &str = "create table a (id int primary key, v text); \
                      create table b (id int primary key, v text)";

/// The syncs of names in the catalog of the daemon configured by `config`.
fn syncs_in(pair: &Pair, config: &std::path::Path) -> Vec<String> {
    let listed: serde_json::Value =
        serde_json::from_str(&pair.beltctl_with(config, &["list", "syncs", "--json"])).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn each_shard_runs_its_own_syncs_and_a_plan_edit_moves_one_without_a_copy() {
    let pair = Pair::new(TABLES).await;
    let src = pair.src().await;
    src.batch_execute(
        "insert into a select g, 'a' from generate_series(1, 200) g; \
         insert into b select g, 'b' from generate_series(1, 200) g",
    )
    .await
    .unwrap();
    let plan = pair.dir.join("plan.yaml");
    let syncs = |shard_of_a: u32| {
        format!(
            "  sa: {{ dbs: \"src:source,dst:target\", tables: a, shard: {shard_of_a}, setup: auto }}\n\
             \x20 sb: {{ dbs: \"src:source,dst:target\", tables: b, group: g1, setup: auto }}\n"
        )
    };
    std::fs::write(&plan, pair.plan_yaml(&syncs(0), "groups:\n  g1: { shard: 1 }\n")).unwrap();
    let plan_arg = plan.display().to_string();
    // Shard 0 from the host name, as in a StatefulSet; shard 1 from BELT_SHARD.
    let config0 = pair.other_config("belt-0", "shard: ordinal\n");
    let config1 = pair.other_config("belt-1", "shard: ordinal\n");
    let d0 = pair.start_daemon_with(&config0, &["--plan", &plan_arg], &[("HOSTNAME", "belt-0")]);
    let d1 = pair.start_daemon_with(&config1, &["--plan", &plan_arg], &[("BELT_SHARD", "1")]);

    let dst = pair.dst().await;
    wait_for(60, "both tables copied by their shards", || async {
        count(&dst, "a").await == 200 && count(&dst, "b").await == 200
    })
    .await;
    assert_eq!(syncs_in(&pair, &config0), ["sa"], "shard 0 holds only its sync");
    assert_eq!(syncs_in(&pair, &config1), ["sb"], "shard 1 holds only its sync");
    src.batch_execute("insert into a values (201, 'later'); insert into b values (201, 'later')")
        .await
        .unwrap();
    wait_for(30, "rows written after the copy", || async {
        count(&dst, "a where id = 201").await == 1 && count(&dst, "b where id = 201").await == 1
    })
    .await;

    // The plan moves sa to shard 1: shard 0 stops running it, shard 1 takes it over
    // from the databases' copy mark, without copying again.
    std::fs::write(&plan, pair.plan_yaml(&syncs(1), "groups:\n  g1: { shard: 1 }\n")).unwrap();
    d0.hup();
    d1.hup();
    wait_for(30, "shard 1 runs sa", || async {
        syncs_in(&pair, &config1).contains(&"sa".to_string()) && d1.log().contains("not copying again")
    })
    .await;
    src.batch_execute("insert into a values (202, 'moved'); update a set v = 'moved' where id <= 10; delete from a where id = 11")
        .await
        .unwrap();
    wait_for(30, "rows written after the move", || async {
        count(&dst, "a where v = 'moved'").await == 11
    })
    .await;
    let log0 = d0.log();
    assert!(log0.contains("moved to shard 1"), "{log0}");
    assert!(
        log0.contains("sync task stopped") || log0.contains("sync stopped"),
        "{log0}"
    );
    let log1 = d1.log();
    assert_eq!(
        log1.matches("initial copy done").count(),
        1,
        "shard 1 copied sb only:\n{log1}"
    );
    assert_same(&pair, "a").await;
    assert_same(&pair, "b").await;
}

#[tokio::test]
async fn a_sharded_daemon_refuses_a_plan_with_a_sync_that_has_no_shard() {
    let pair = Pair::new(TABLES).await;
    let plan = pair.dir.join("plan.yaml");
    std::fs::write(
        &plan,
        pair.plan_yaml("  sa: { dbs: \"src:source,dst:target\", tables: a }\n", ""),
    )
    .unwrap();
    let config = pair.other_config("belt-3", "shard: 3\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_belt-syncd"))
        .arg("-c")
        .arg(&config)
        .arg("--plan")
        .arg(&plan)
        .output()
        .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&format!("{}:5:3", plan.display())) && said.contains("sync 'sa' has no shard"),
        "{said}"
    );
}

#[tokio::test]
async fn a_daemon_that_lost_its_catalog_rebuilds_it_from_the_plan_without_copying_again() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    let src = pair.src().await;
    src.batch_execute("insert into t select g, 'copied' from generate_series(1, 500) g")
        .await
        .unwrap();
    let plan_arg = pair.app_plan();
    let config = pair.config.clone();
    let mut daemon = pair.start_daemon_with(&config, &["--plan", &plan_arg], &[]);
    let dst = pair.dst().await;
    wait_for(60, "the copy", || async { count(&dst, "t").await == 500 }).await;
    src.batch_execute("update t set v = 'replicated' where id <= 50")
        .await
        .unwrap();
    wait_for(30, "a round", || async {
        count(&dst, "t where v = 'replicated'").await == 50
    })
    .await;

    // The pod dies and comes back on an empty volume; the application writes meanwhile.
    daemon.kill9();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(pair.dir.join(format!("belt.db{suffix}")));
    }
    src.batch_execute(
        "update t set v = 'while down' where id between 51 and 100; \
         delete from t where id > 490; insert into t values (501, 'while down')",
    )
    .await
    .unwrap();
    let daemon = pair.start_daemon_with(&config, &["--plan", &plan_arg], &[]);
    wait_for(60, "the changes made while the daemon was down", || async {
        count(&dst, "t where v = 'while down'").await == 51 && count(&dst, "t").await == 491
    })
    .await;
    let log = daemon.log();
    assert!(log.contains("not copying again"), "{log}");
    assert_eq!(
        log.matches("initial copy done").count(),
        1,
        "copied once, before the catalog was lost:\n{log}"
    );
    assert_same(&pair, "t").await;
}

/// Sessions belt holds on `dbname`, by the application name this test gives belt.
async fn belt_sessions(pair: &Pair, dbname: &str) -> i64 {
    pair.admin(dbname)
        .await
        .query_one(
            "select count(*) from pg_stat_activity where application_name = 'belt-idle' and datname = $1",
            &[&dbname],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn an_idle_sync_holds_one_connection_and_wakes_on_a_change() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    let pw = format!("password_file={}", pair.cluster.password_file().display());
    pair.add_dbs_as_with("postgres", &[pw, "application_name=belt-idle".into()], &[]);
    pair.add_app_sync("t", "src:source,dst:target");
    let _daemon = pair.start_daemon();
    pair.kick_wait();
    wait_for(40, "the idle sync's receiver connection closed", || async {
        belt_sessions(&pair, DST).await == 0 && belt_sessions(&pair, SRC).await == 1
    })
    .await;
    let src = pair.src().await;
    src.batch_execute("insert into t values (1, 'woke it')")
        .await
        .unwrap();
    let dst = pair.dst().await;
    wait_for(10, "the change, carried by the woken sync", || async {
        count(&dst, "t").await == 1
    })
    .await;
    assert_same(&pair, "t").await;
}

#[tokio::test]
async fn more_busy_syncs_than_the_connection_budget_take_turns_and_all_arrive() {
    let tables = ["a", "b", "c", "d", "e"];
    let schema: String = tables
        .iter()
        .map(|t| format!("create table {t} (id int primary key, v text);"))
        .collect();
    let pair = Pair::with_config(
        &schema,
        "max_connections_per_server: 3\nsetup_jobs: 1\ncopy_jobs: 1\n",
    )
    .await;
    let pw = format!("password_file={}", pair.cluster.password_file().display());
    pair.add_dbs_as_with("postgres", &[pw, "application_name=belt-idle".into()], &[]);
    for t in tables {
        let name = format!("s{t}");
        pair.beltctl_ok(&[
            "add",
            "sync",
            &name,
            "--dbs",
            "src:source,dst:target",
            "--tables",
            t,
        ]);
        pair.beltctl_ok(&["setup", &name]);
    }
    let _daemon = pair.start_daemon();
    wait_for(120, "five syncs set up", || async {
        let all: serde_json::Value = serde_json::from_str(&pair.beltctl_ok(&["status", "--json"])).unwrap();
        all.as_array()
            .unwrap()
            .iter()
            .filter(|s| s["state"] == "replicating")
            .count()
            == 5
    })
    .await;

    // Every sync busy at once: at most 3 of them hold a receiver at a time, by
    // belt's own count (pg_stat_activity also lists a backend for a moment after
    // belt closed its connection).
    let src = pair.src().await;
    let series = format!(
        "belt_server_connections{{server=\"127.0.0.1:{}\"}}",
        pair.cluster.port()
    );
    let mut most = 0.0f64;
    for i in 1..=200 {
        for t in tables {
            src.execute(&format!("insert into {t} values ($1, 'busy')"), &[&i])
                .await
                .unwrap();
        }
        if i % 10 == 0 {
            most = most.max(sample(&get(&pair, "/metrics").1, &series));
        }
    }
    let dst = pair.dst().await;
    for t in tables {
        wait_for(60, "every table's rows", || async { count(&dst, t).await == 200 }).await;
        assert_same(&pair, t).await;
    }
    assert!(most <= 3.0, "{most} receivers open with a budget of 3");
}
