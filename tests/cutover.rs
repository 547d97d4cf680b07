//! Cutover and failback under a live writer: every gate passes, writes made on the
//! new side come back to the old one, sequences and key-less tables follow, verify
//! passes at each end; a failed gate leaves the old side authoritative and writable.

use crate::support::{can_login, count, text, wait_for, Pair, SRC};

const SCHEMA: &str = "create table t (id serial primary key, v text); create table notes (line text);";

async fn set_up(pair: &Pair) {
    pair.admin(SRC)
        .await
        .batch_execute("create role shop login")
        .await
        .unwrap();
    pair.src()
        .await
        .batch_execute("insert into t (v) select 'seed' from generate_series(1, 1000); insert into notes values ('a'), ('b')")
        .await
        .unwrap();
    pair.add_sync("all");
}

#[tokio::test]
async fn cutover_then_failback_loses_no_write() {
    let pair = Pair::on_two_servers(SCHEMA, "").await;
    set_up(&pair).await;
    let _daemon = pair.start_daemon();
    wait_for(60, "setup", || async { pair.status()["state"] == "replicating" }).await;

    // The application keeps writing on the source until the fence.
    let writer = pair.src().await;
    let load = tokio::spawn(async move {
        for i in 0..400 {
            if writer
                .batch_execute(&format!("insert into t (v) values ('live {i}')"))
                .await
                .is_err()
            {
                break; // fenced: the session was ended
            }
        }
    });
    pair.src()
        .await
        .batch_execute("insert into notes values ('c')")
        .await
        .unwrap();
    let out = pair.beltctl(&["cutover", "app", "--timeout", "60s"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    for gate in [
        "fence",
        "drain",
        "sequences",
        "key-less tables",
        "verify",
        "analyze",
        "switch",
    ] {
        assert!(shown.contains(gate), "gate {gate} not reported: {shown}");
    }
    load.await.unwrap();
    assert!(!can_login(&pair, "shop").await, "the old source stays fenced");
    assert!(pair.beltctl(&["verify", "app"]).status.success());
    let again = pair.beltctl_ok(&["cutover", "app"]);
    assert!(again.contains("nothing to do"), "{again}");

    // Writes on the new side flow back to the old one; ids continue past the old ones.
    let dst = pair.dst().await;
    dst.batch_execute("insert into t (v) values ('on the new side')")
        .await
        .unwrap();
    // The old side stays fenced: only an administrator reads it now.
    let src = pair.admin(SRC).await;
    wait_for(30, "back replication", || async {
        pair.kick_wait();
        count(&src, "t where v = 'on the new side'").await == 1
    })
    .await;
    let max_src: i32 = src
        .query_one("select max(id) from t where v <> 'on the new side'", &[])
        .await
        .unwrap()
        .get(0);
    let new_id: i32 = dst
        .query_one("select id from t where v = 'on the new side'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        new_id > max_src,
        "new side handed out id {new_id}, already used ({max_src}) on the old one"
    );
    assert_eq!(
        count(&dst, "notes").await,
        3,
        "key-less tables are copied at cutover"
    );

    let out = pair.beltctl(&["failback", "app", "--timeout", "60s"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        can_login(&pair, "shop").await,
        "failback lets the application back onto the old side"
    );
    pair.src()
        .await
        .batch_execute("insert into t (v) values ('after failback')")
        .await
        .unwrap();
    pair.kick_wait();
    assert!(
        pair.beltctl(&["verify", "app"]).status.success(),
        "equal after failback"
    );
    // The new side is fenced again: the application's sessions there were ended.
    let dst = pair.admin(crate::support::DST).await;
    assert_eq!(count(&dst, "t where v = 'after failback'").await, 1);
}

#[tokio::test]
async fn a_failed_gate_leaves_the_source_authoritative_and_writable() {
    let pair = Pair::on_two_servers(SCHEMA, "").await;
    set_up(&pair).await;
    let mut daemon = pair.start_daemon();
    wait_for(60, "setup", || async { pair.status()["state"] == "replicating" }).await;
    daemon.terminate();
    pair.src()
        .await
        .batch_execute("insert into t (v) values ('pending')")
        .await
        .unwrap();

    let out = pair.beltctl(&["cutover", "app", "--timeout", "2s"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("gate 'drain' failed"), "{shown}");
    assert!(shown.contains("'src' is still authoritative"), "{shown}");
    assert!(can_login(&pair, "shop").await, "the fence is lifted");
    let syncs: serde_json::Value =
        serde_json::from_str(&pair.beltctl_ok(&["list", "syncs", "--json"])).unwrap();
    assert_eq!(syncs[0]["dbs"], "src:source,dst:target", "roles unchanged");
}

#[tokio::test]
async fn a_table_nobody_replicates_stops_verify_and_cutover_unless_excluded() {
    let pair = Pair::on_two_servers("create table t (id int primary key, v text)", "").await;
    // A sync of listed tables: a table created later is nobody's.
    pair.add_sync("t");
    let _daemon = pair.start_daemon();
    wait_for(60, "setup", || async { pair.status()["state"] == "replicating" }).await;
    pair.as_owner(SRC, "create table later (id int primary key)")
        .await;
    pair.src()
        .await
        .batch_execute("insert into later values (1); insert into t values (1, 'replicated')")
        .await
        .unwrap();
    pair.kick_wait();

    let out = pair.beltctl(&["verify", "app"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("table public.later exists on 'src' only and is not replicated"),
        "{said}"
    );
    let out = pair.beltctl(&["cutover", "app", "--timeout", "60s"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("gate 'tables' failed") && said.contains("public.later") && said.contains("--exclude"),
        "{said}"
    );
    assert!(can_login(&pair, "app_user").await, "refused before the fence");
    let out = pair.beltctl(&["cutover", "app", "--timeout", "60s", "--exclude", "later"]);
    assert!(out.status.success(), "{}", text(&out));
    crate::support::assert_same_admin(&pair, "t").await;
}
