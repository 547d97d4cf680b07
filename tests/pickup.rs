//! A sync added with `--tables all` follows the database: a table created on the
//! source afterwards reaches the target — schema, grants, rows and later changes —
//! and verify counts it as replicated.

use crate::support::{assert_same, count, wait_for, Pair, DST, SRC};

#[tokio::test]
async fn a_table_created_later_is_picked_up_copied_and_replicated() {
    let pair = Pair::on_two_servers("create table t (id int primary key, v text)", "").await;
    pair.add_sync("all");
    let _daemon = pair.start_daemon();
    wait_for(60, "setup", || async { pair.status()["state"] == "replicating" }).await;

    pair.as_owner(
        SRC,
        "create table later (id serial primary key, v text, at timestamptz default now()); \
             create index later_v on later (v)",
    )
    .await;
    let app = pair.src().await;
    app.batch_execute("insert into later (v) select 'row ' || g from generate_series(1, 5000) g")
        .await
        .unwrap();
    let dst_admin = pair.admin(DST).await;
    wait_for(60, "the new table to arrive", || async {
        pair.kick_wait();
        let there: bool = dst_admin
            .query_one("select to_regclass('public.later') is not null", &[])
            .await
            .unwrap()
            .get(0);
        there && count(&dst_admin, "later").await == 5000
    })
    .await;
    app.batch_execute(
        "update later set v = 'changed' where id <= 10; delete from later where id > 4990; \
         insert into later (v) values ('after pickup'); insert into t values (1, 'still here')",
    )
    .await
    .unwrap();
    pair.kick_wait();
    assert_same(&pair, "later").await;
    assert_same(&pair, "t").await;
    let out = pair.beltctl(&["verify", "app"]);
    assert!(out.status.success(), "{}", crate::support::text(&out));
    let tables = pair.beltctl_ok(&["list", "tables", "app"]);
    assert!(tables.contains("public.later"), "{tables}");
}
