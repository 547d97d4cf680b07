//! Wide rows: a chunk is bounded by bytes as well as by keys, so that 300 rows of
//! 2 MB move in chunks that each finish well within the stall limit; and a chunk
//! that stalls all the same (rows grew wide after the estimate) is cut before it is
//! retried, instead of being retried at the same size for ever.

use crate::support::{count, rows, wait_for, Pair, SRC};

/// A stall limit that a 600 MB chunk cannot meet but a chunk of 32 MB meets easily.
const CONFIG: &str = "stall_timeout_ms: 4000\n";

/// Whether `table` holds the same `expected` rows on both sides, compared by digest
/// rather than by holding 600 MB of text twice.
async fn digests_equal(pair: &Pair, table: &str, expected: usize) -> bool {
    let digest = format!("(select id, md5(v) from {table})");
    let dst = pair.dst().await;
    if count(&dst, &format!("pg_tables where tablename = '{table}'")).await == 0 {
        return false; // not picked up yet
    }
    let (s, d) = (rows(&pair.src().await, &digest).await, rows(&dst, &digest).await);
    s.len() == expected && s == d
}

/// Creates `table` on the source with a text column stored uncompressed.
async fn create(pair: &Pair, table: &str) {
    pair.as_owner(
        SRC,
        &format!(
            "create table {table} (id int primary key, v text); \
             alter table {table} alter column v set storage external"
        ),
    )
    .await;
}

#[tokio::test]
async fn chunks_of_wide_rows_are_cut_by_bytes_and_shrink_after_a_stall() {
    let pair = Pair::with_config("create table t (id int primary key)", CONFIG).await;
    pair.add_sync("all");
    let daemon = pair.start_daemon();
    wait_for(60, "setup", || async { pair.status()["state"] == "replicating" }).await;
    let app = pair.src().await;

    // 300 rows of 2 MB in a table created during the sync: picked up, then copied by
    // the rounds, whose chunks the row estimate cuts to 16 keys.
    create(&pair, "wide").await;
    app.batch_execute(
        "insert into wide select g, repeat(md5(g::text), 65536) from generate_series(1, 300) g",
    )
    .await
    .unwrap();
    wait_for(120, "300 rows of 2 MB on the target", || {
        digests_equal(&pair, "wide", 300)
    })
    .await;
    assert!(
        !daemon.log().contains("chunk stalled"),
        "no chunk of rows of known width may stall:\n{}",
        daemon.log()
    );

    // Rows that were narrow when the estimate was made grow to 2 MB: the round (300
    // keys, one transaction by the stale estimate) stalls, the next rounds go in
    // chunks cut by a fresh estimate, and everything arrives.
    create(&pair, "grows").await;
    app.batch_execute("insert into grows select g, 'narrow' from generate_series(1, 300) g")
        .await
        .unwrap();
    wait_for(60, "the narrow rows on the target", || {
        digests_equal(&pair, "grows", 300)
    })
    .await;
    app.batch_execute("update grows set v = repeat(md5(id::text), 65536)")
        .await
        .unwrap();
    wait_for(180, "the widened rows on the target", || {
        digests_equal(&pair, "grows", 300)
    })
    .await;
    assert!(
        daemon
            .log()
            .contains("round stalled: the next rounds go in chunks"),
        "this scenario stalls one round:\n{}",
        daemon.log()
    );
}
