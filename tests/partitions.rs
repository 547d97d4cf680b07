//! Partitioned tables: a write reaches the other side whichever relation it names,
//! the partitioned table or one of its partitions; rows move between partitions;
//! partitions created, attached, detached or truncated on one side during the sync
//! are followed on the other, on the oldest and newest servers belt supports too.

use crate::support::{assert_same, count, postgres_bin, wait_for, Pair, DST, SRC};

const SCHEMA: &str = "
create table orders (id bigint not null, placed date not null, v text, primary key (id, placed))
    partition by range (placed);
create table orders_2026_10 partition of orders for values from ('2026-10-01') to ('2026-11-01');
create table orders_2026_11 partition of orders for values from ('2026-11-01') to ('2026-12-01');";

#[tokio::test]
async fn writes_to_partitions_and_new_partitions_replicate_both_ways() {
    let pair = Pair::new(SCHEMA).await;
    pair.add_sync_with("all", "src:source,dst:source");
    let _daemon = pair.start_daemon();
    pair.kick_wait();
    let (src, dst) = (pair.src().await, pair.dst().await);

    // Through the partitioned table and straight into a partition, as ORMs and
    // partition-maintenance jobs do.
    src.batch_execute(
        "insert into orders select g, '2026-10-15', 'parent' from generate_series(1, 10) g; \
         insert into orders_2026_11 select g, '2026-11-15', 'leaf' from generate_series(11, 20) g",
    )
    .await
    .unwrap();
    pair.kick_wait();
    assert_same(&pair, "orders").await;

    // Rows move between partitions; a partition is written directly on the other side.
    src.batch_execute(
        "update orders set placed = '2026-11-02' where id <= 3; \
         update orders_2026_11 set v = 'leaf update' where id > 15; delete from orders_2026_11 where id = 20",
    )
    .await
    .unwrap();
    dst.batch_execute("insert into orders_2026_10 values (100, '2026-10-31', 'from dst')")
        .await
        .unwrap();
    pair.kick_wait();
    assert_same(&pair, "orders").await;

    // A partition created during the sync (on both sides, as schema changes are).
    for db in [SRC, DST] {
        pair.as_owner(db, "create table orders_2026_12 partition of orders for values from ('2026-12-01') to ('2027-01-01')").await;
    }
    src.batch_execute(
        "insert into orders_2026_12 select g, '2026-12-24', 'new partition' from generate_series(200, 209) g",
    )
    .await
    .unwrap();
    pair.kick_wait();
    assert_same(&pair, "orders").await;
    assert_eq!(crate::support::count(&dst, "orders_2026_12").await, 10);

    // A truncate of the partitioned table.
    pair.as_owner(SRC, "grant truncate on all tables in schema public to app_user")
        .await;
    src.batch_execute("truncate orders").await.unwrap();
    pair.kick_wait();
    src.batch_execute("insert into orders values (1, '2026-10-01', 'after truncate')")
        .await
        .unwrap();
    pair.kick_wait();
    assert_same(&pair, "orders").await;
    assert_eq!(crate::support::count(&dst, "orders").await, 1);
}

/// What a partition-maintenance job does on one side only: truncate one partition,
/// create next month's, attach a table loaded beforehand, detach an old one.
async fn partition_maintenance_on_one_side_is_followed(pair: Pair) {
    pair.add_sync_with("all", "src:source,dst:source");
    let _daemon = pair.start_daemon();
    wait_for(60, "setup", || async { pair.status()["state"] == "replicating" }).await;
    let (src, dst) = (pair.src().await, pair.dst().await);
    pair.as_owner(SRC, "grant truncate on all tables in schema public to app_user")
        .await;
    src.batch_execute(
        "insert into orders select g, '2026-10-15', 'october' from generate_series(1, 10) g; \
         insert into orders select g, '2026-11-15', 'november' from generate_series(11, 20) g",
    )
    .await
    .unwrap();
    pair.kick_wait();
    assert_same(&pair, "orders").await;

    // One partition truncated: only its rows go, on both sides.
    src.batch_execute("truncate orders_2026_10").await.unwrap();
    wait_for(30, "the truncate of one partition on the other side", || async {
        pair.kick_wait();
        count(&dst, "orders_2026_10").await == 0
    })
    .await;
    assert_eq!(count(&dst, "orders_2026_11").await, 10);

    // Next month's partition, created on the source only, and written to at once.
    pair.as_owner(
        SRC,
        "create table orders_2026_12 partition of orders for values from ('2026-12-01') to ('2027-01-01')",
    )
    .await;
    src.batch_execute("insert into orders select g, '2026-12-24', 'december' from generate_series(21, 30) g")
        .await
        .unwrap();
    // A table loaded first, then attached: its rows fire no trigger.
    pair.as_owner(
        SRC,
        "create table orders_2027_01 (like orders including all); \
         insert into orders_2027_01 select g, '2027-01-05', 'bulk' from generate_series(31, 40) g; \
         alter table orders attach partition orders_2027_01 for values from ('2027-01-01') to ('2027-02-01')",
    )
    .await;
    wait_for(
        60,
        "the new partitions and their rows on the other side",
        || async {
            pair.kick_wait();
            count(&dst, "orders").await == 30
        },
    )
    .await;
    assert_same(&pair, "orders").await;

    // An old partition detached on the source: its rows leave the table on both
    // sides and stay, replicated, in a table of their own.
    pair.as_owner(SRC, "alter table orders detach partition orders_2026_11")
        .await;
    wait_for(60, "the detach on the other side", || async {
        pair.kick_wait();
        count(&dst, "orders").await == 20
    })
    .await;
    dst.batch_execute("insert into orders values (41, '2027-01-31', 'from dst')")
        .await
        .unwrap();
    pair.kick_wait();
    assert_same(&pair, "orders").await;
    assert_eq!(count(&dst, "orders_2026_11").await, 10);
    wait_for(
        60,
        "verify to pass with the detached table replicated",
        || async {
            pair.kick_wait();
            pair.beltctl(&["verify", "app"]).status.success()
        },
    )
    .await;
    assert_same(&pair, "orders_2026_11").await;
}

#[tokio::test]
async fn partition_maintenance_on_one_side_is_followed_pg15() {
    partition_maintenance_on_one_side_is_followed(Pair::new(SCHEMA).await).await;
}

#[tokio::test]
async fn partition_maintenance_on_one_side_is_followed_pg12() {
    let pair = Pair::two_servers_of(&postgres_bin(12), SCHEMA).await;
    partition_maintenance_on_one_side_is_followed(pair).await;
}

#[tokio::test]
async fn partition_maintenance_on_one_side_is_followed_pg17() {
    let pair = Pair::two_servers_of(&postgres_bin(17), SCHEMA).await;
    partition_maintenance_on_one_side_is_followed(pair).await;
}
