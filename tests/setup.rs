//! Setting syncs up as an operator does: a group (fleet) of syncs, `setup --wait`
//! following them with progress, `status GROUP` with one row per sync.

use crate::support::{assert_same, text, Pair, DST, SRC};

#[tokio::test]
async fn setup_waits_for_a_group_and_status_shows_every_sync() {
    let schema = "create table a (id int primary key, v text); create table b (id int primary key, v text)";
    // One setup at a time: the second sync waits, queued, for the first.
    let pair = Pair::with_config(schema, "copy_chunk_rows: 5000\nsetup_jobs: 1\n").await;
    pair.src()
        .await
        .batch_execute(
            "insert into a select i, md5(i::text) from generate_series(1, 60000) i; \
             insert into b select i, md5(i::text) from generate_series(1, 40000) i; analyze",
        )
        .await
        .unwrap();
    for (name, db) in [("src", SRC), ("dst", DST)] {
        let mut args = vec!["add".to_string(), "db".into(), name.into()];
        args.extend(pair.cluster.add_db_args(db));
        pair.beltctl_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    for (sync, table) in [("sa", "a"), ("sb", "b")] {
        pair.beltctl_ok(&[
            "add",
            "sync",
            sync,
            "--dbs",
            "src:source,dst:target",
            "--tables",
            table,
            "--group",
            "dc1",
        ]);
    }
    let _daemon = pair.start_daemon();
    let status: serde_json::Value =
        serde_json::from_str(&pair.beltctl_ok(&["status", "dc1", "--json"])).unwrap();
    assert_eq!(
        status[0]["phase"], "waiting for beltctl setup",
        "added syncs wait for setup: {status}"
    );
    let out = pair.beltctl(&["setup", "dc1", "--wait", "--jobs", "1", "--timeout", "180"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("sa, sb replicating"), "{shown}");
    assert!(
        shown.contains("sa: ") && shown.contains("rows copied"),
        "progress lines when not a terminal: {shown}"
    );

    let status: serde_json::Value =
        serde_json::from_str(&pair.beltctl_ok(&["status", "dc1", "--json"])).unwrap();
    let rows = status.as_array().expect("one row per sync");
    assert_eq!(rows.len(), 2, "{status}");
    for row in rows {
        assert_eq!(row["state"], "replicating", "{row}");
        assert!(row["copy_rows"].as_i64().unwrap() >= 40000, "{row}");
    }
    pair.kick_wait_for("sa");
    assert_same(&pair, "a").await;
    assert_same(&pair, "b").await;
}
