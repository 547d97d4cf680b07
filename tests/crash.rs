//! Rule 5: kill -9 in the middle of a large catch-up, restart, and the target ends
//! equal to the source without the backlog starting over.

use crate::support::{assert_same, count, wait_for, Pair, SRC};

const ROWS: i64 = 200_000;

#[tokio::test]
async fn kill_9_during_catch_up_resumes_and_converges() {
    let pair = Pair::with_config(
        "create table big (id integer primary key, v text, n bigint)",
        "chunk_keys: 2000\n",
    )
    .await;
    pair.add_sync("big");
    let mut daemon = pair.start_daemon();
    pair.kick_wait(); // capture installed
    assert!(
        daemon.terminate().success(),
        "SIGTERM must exit 0:\n{}",
        daemon.log()
    );

    let src = pair.src().await;
    src.batch_execute(&format!(
        "insert into big select i, md5(i::text), i * 7 from generate_series(1, {ROWS}) i"
    ))
    .await
    .unwrap();
    let admin = pair.admin(SRC).await;
    let delta: String = admin
        .query_one(
            "select 'belt.' || quote_ident(belt.delta_name('public', 'big'))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count(&admin, &delta).await, ROWS);

    let mut daemon = pair.start_daemon();
    let dst = pair.dst().await;
    // Applied chunks are purged, so that a restart does not start over. (Waiting for
    // rows on the target instead could kill the daemon between the first chunk's
    // commit and its purge.)
    wait_for(120, "the first chunks to land and be purged", || async {
        count(&admin, &delta).await < ROWS
    })
    .await;
    daemon.kill9();

    let left = count(&admin, &delta).await;
    let landed = count(&dst, "big").await;
    assert!(landed >= ROWS - left, "every purged key must be on the target");

    // More writes while the daemon is down, touching applied and unapplied keys.
    src.batch_execute("update big set n = -n where id % 1000 = 0; delete from big where id % 999 = 0")
        .await
        .unwrap();

    let _daemon = pair.start_daemon();
    wait_for(300, "catch-up to finish", || async {
        count(&admin, &delta).await == 0
    })
    .await;
    pair.kick_wait();
    assert_same(&pair, "big").await;
}
