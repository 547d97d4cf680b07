//! Rule 5: a round is atomic per side. Application transactions on both databases
//! write an order together with its lines and keep `n_lines` equal to the number of
//! lines; a reader on each side checks, at REPEATABLE READ, that this holds for
//! every order — the other side's orders included, which arrive by replication. A
//! round that applied tables in separate transactions shows it half-applied.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::support::{assert_same, wait_for, Pair, DST, SRC};

const SCHEMA: &str = "
create table orders (id bigint primary key, n_lines int not null);
create table order_lines (
    order_id bigint not null references orders on delete cascade,
    line int not null,
    amount numeric not null,
    primary key (order_id, line));";

/// Orders whose `n_lines` differs from their count of lines, in one snapshot.
const VIOLATIONS: &str = "select count(*) from orders o \
    where o.n_lines <> (select count(*) from order_lines l where l.order_id = o.id)";

/// Writes orders with ids `offset`, `offset + 2`, … and changes their lines, each in
/// one transaction that keeps `n_lines` right, until `stop`.
async fn write_orders(app: Client, offset: i64, stop: Arc<AtomicBool>) -> i64 {
    let mut next = offset;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let lines = 1 + next % 5;
        app.batch_execute(&format!(
            "begin; insert into orders values ({next}, {lines}); \
             insert into order_lines select {next}, g, g * 1.5 from generate_series(1, {lines}) g; commit"
        ))
        .await
        .expect("insert an order with its lines");
        if next > offset + 10 {
            // Change an earlier order: one line more, or its last line less.
            let id = next - 10;
            let sql = if n % 2 == 0 {
                format!(
                    "begin; update orders set n_lines = n_lines + 1 where id = {id}; \
                     insert into order_lines select {id}, coalesce(max(line), 0) + 1, 9 from order_lines where order_id = {id}; commit"
                )
            } else {
                format!(
                    "begin; update orders set n_lines = n_lines - 1 where id = {id}; \
                     delete from order_lines where order_id = {id} and line = (select max(line) from order_lines where order_id = {id}); commit"
                )
            };
            app.batch_execute(&sql).await.expect("change an order's lines");
        }
        next += 2;
        n += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    n
}

/// Checks the invariant in a loop until `stop`; counts the snapshots that break it.
async fn read_invariant(app: Client, stop: Arc<AtomicBool>, broken: Arc<AtomicU64>) -> u64 {
    let mut checks = 0;
    while !stop.load(Ordering::Relaxed) {
        let rows = app
            .simple_query(&format!(
                "begin isolation level repeatable read; {VIOLATIONS}; commit"
            ))
            .await
            .expect("check the invariant");
        let bad: i64 = rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
                _ => None,
            })
            .expect("a count");
        if bad > 0 {
            broken.fetch_add(1, Ordering::Relaxed);
        }
        checks += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    checks
}

#[tokio::test]
async fn a_reader_never_sees_half_of_a_source_transaction() {
    let pair = Pair::new(SCHEMA).await;
    pair.add_sync_with("orders,order_lines", "src:source,dst:source");
    let _daemon = pair.start_daemon();
    pair.kick_wait();

    let stop = Arc::new(AtomicBool::new(false));
    let broken = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for (db, offset) in [(SRC, 1), (DST, 2)] {
        writers.push(tokio::spawn(write_orders(
            pair.connect(db).await,
            offset,
            stop.clone(),
        )));
        readers.push(tokio::spawn(read_invariant(
            pair.connect(db).await,
            stop.clone(),
            broken.clone(),
        )));
    }
    let secs = std::env::var("BELT_ATOMIC_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    let mut checks = 0;
    for r in readers {
        checks += r.await.unwrap();
    }
    wait_for(60, "both sides to converge", || async {
        pair.kick_wait();
        crate::support::rows(&pair.src().await, "orders").await
            == crate::support::rows(&pair.dst().await, "orders").await
    })
    .await;
    assert_same(&pair, "orders").await;
    assert_same(&pair, "order_lines").await;
    assert_eq!(pair.status()["consistent"], true, "{}", pair.status());
    let broken = broken.load(Ordering::Relaxed);
    assert!(
        written > 100 && checks > 100,
        "load too light: {written} writes, {checks} checks"
    );
    assert_eq!(
        broken, 0,
        "{broken} of {checks} snapshots saw an order without its lines ({written} orders written)"
    );
}

#[tokio::test]
async fn a_refused_row_is_parked_inside_the_round_and_the_rest_commits_whole() {
    let mut both = crate::multimaster::Both::new(
        "create table a (id int primary key); create table u (id int primary key, code text unique)",
        &["a", "u"],
        belt::engine::Strategy::Latest,
    )
    .await;
    // A row only the second database has (written without capture), taking code 'x'.
    both.pair
        .admin(DST)
        .await
        .batch_execute("set session_replication_role = replica; insert into u values (100, 'x')")
        .await
        .unwrap();
    // One source transaction: a row of `a`, a row of `u` the other side refuses, and
    // one it takes.
    both.a
        .batch_execute("begin; insert into a values (1); insert into u values (1, 'x'), (2, 'y'); commit")
        .await
        .unwrap();
    let r = both.round().await;
    assert!(r.consistent, "the round stays one transaction: {r:?}");
    assert_eq!(r.parked.len(), 1, "{r:?}");
    assert_eq!(r.parked[0].key, vec!["1".to_string()]);
    assert_eq!(crate::support::count(&both.b, "a").await, 1);
    assert_eq!(crate::support::count(&both.b, "u where id = 2").await, 1);
    assert_eq!(crate::support::count(&both.b, "u where id = 1").await, 0);
    // Everything but the parked row is alike on both sides.
    assert_same(&both.pair, "a").await;
    assert_same(&both.pair, "(select * from u where id not in (1, 100))").await;
}

#[tokio::test]
async fn a_row_the_receivers_application_holds_waits_for_the_next_round_and_the_rest_commits_whole() {
    let mut both =
        crate::multimaster::Both::new(SCHEMA, &["orders", "order_lines"], belt::engine::Strategy::Latest)
            .await;
    both.a
        .batch_execute("insert into orders values (1, 1); insert into order_lines values (1, 1, 10)")
        .await
        .unwrap();
    both.settle().await;
    // The second database's application holds order 1's row in a transaction it has
    // not ended; the first database's application changes order 1 and writes order 2
    // with its lines, in one transaction.
    let holder = both.pair.connect(DST).await;
    holder
        .batch_execute("begin; update orders set n_lines = n_lines where id = 1")
        .await
        .unwrap();
    both.a
        .batch_execute(
            "begin; update orders set n_lines = 2 where id = 1; insert into order_lines values (1, 2, 5); \
             insert into orders values (2, 3); insert into order_lines select 2, g, 1 from generate_series(1, 3) g; commit",
        )
        .await
        .unwrap();
    let r = both.round().await;
    assert!(r.consistent && !r.raced, "the round stays one transaction: {r:?}");
    assert_eq!(r.deferred, 1, "{r:?}");
    // Order 2 arrived whole; the held row's change waits.
    assert_eq!(crate::support::count(&both.b, "orders where id = 2").await, 1);
    assert_eq!(
        crate::support::count(&both.b, "order_lines where order_id = 2").await,
        3
    );
    assert_eq!(
        crate::support::count(&both.b, "orders where id = 1 and n_lines = 1").await,
        1
    );
    holder.batch_execute("rollback").await.unwrap();
    let r = both.round().await;
    assert_eq!(r.deferred, 0, "{r:?}");
    assert_eq!(
        r.keys_from[0], 1,
        "the deferred key came with the next round: {r:?}"
    );
    assert_same(&both.pair, "orders").await;
    assert_same(&both.pair, "order_lines").await;
    for c in [&both.a, &both.b] {
        assert_eq!(c.query_one(VIOLATIONS, &[]).await.unwrap().get::<_, i64>(0), 0);
    }
}
