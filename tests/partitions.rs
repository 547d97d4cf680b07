//! Partitioned tables: a write reaches the other side whichever relation it names,
//! the partitioned table or one of its partitions; rows move between partitions; a
//! partition created during the sync is followed; a truncate of the partitioned
//! table is applied.

use crate::support::{assert_same, Pair, DST, SRC};

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
