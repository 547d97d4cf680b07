//! Fault injection: the network between the daemon and the databases breaks, the
//! servers crash, the daemon is killed again and again, a source comes back from a
//! backup. Each time the sync says what happened, recovers by itself (or, for the
//! backup, stops), and the databases end equal with every committed write kept once.

use std::time::Duration;

use crate::support::load::{assert_converged, Load, SCHEMA};
use crate::support::proxy::{Mode, Proxy};
use crate::support::{count, wait_for, Pair, DST, SRC};

/// Errors the sync has reported so far.
fn errors(pair: &Pair) -> i64 {
    pair.status()["errors"].as_i64().unwrap()
}

fn rounds(pair: &Pair) -> i64 {
    pair.status()["rounds"].as_i64().unwrap()
}

/// Waits until the sync replicates again: a round finished after now.
async fn wait_recovered(pair: &Pair, what: &str) {
    let before = rounds(pair);
    wait_for(90, what, || async {
        let s = pair.status();
        s["state"] == "replicating" && s["rounds"].as_i64().unwrap() > before
    })
    .await;
}

/// Two-way load at this many transactions per second per side, a fifth of them
/// on the hot rows; each side's own keys start at `base` and `base + 1 000 000`.
fn two_way_load(pair: &Pair, base: i64, per_second: u32, hot_percent: u64, seed: u64) -> Load {
    Load::start(
        vec![
            (pair.app_spec("src", SRC), base),
            (pair.app_spec("dst", DST), base + 1_000_000),
        ],
        per_second,
        hot_percent,
        seed,
    )
}

#[tokio::test]
async fn cut_blackholed_and_slow_networks_lose_and_double_nothing() {
    let pair = Pair::with_config(SCHEMA, "stall_timeout_ms: 4000\npoll_interval_ms: 200\n").await;
    let proxies = [
        Proxy::start(pair.server_of(SRC).port()),
        Proxy::start(pair.server_of(DST).port()),
    ];
    pair.add_dbs_at([proxies[0].port(), proxies[1].port()]);
    pair.add_app_sync("t", "src:source,dst:source");
    let _daemon = pair.start_daemon();
    pair.kick_wait();
    let load = two_way_load(&pair, 1_000_000, 100, 20, 7);
    let dst = pair.dst().await;
    wait_for(30, "the first rows to replicate", || async {
        count(&dst, "t where id >= 1000000 and id < 2000000").await > 0
    })
    .await;

    // Every connection cut mid-round.
    let before = errors(&pair);
    for p in &proxies {
        p.cut();
    }
    wait_for(30, "the cut to be reported", || async { errors(&pair) > before }).await;
    wait_recovered(&pair, "replication to resume after the cut").await;

    // The target's network swallows everything for 10 s.
    proxies[1].set(Mode::Blackhole);
    let started = std::time::Instant::now();
    wait_for(30, "the stall to be reported", || async {
        let s = pair.status();
        s["state"] == "retrying"
            && s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("'dst' answered nothing"))
    })
    .await;
    // The outage lasts 10 s whatever the test waited so far: a duration, not a condition.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(started.elapsed())).await;
    proxies[1].set(Mode::Pass);
    wait_recovered(&pair, "replication to resume after the blackhole").await;

    // Both networks slow: 20 ms each way on every message. A chunk then takes
    // about 1.6 s (40 round trips), so hot rows written several times a second
    // would lose every race: the load turns gentle on the hot rows.
    let mut models = load.finish();
    let load = two_way_load(&pair, 3_000_000, 50, 2, 8);
    for p in &proxies {
        p.set(Mode::Delay(Duration::from_millis(20)));
    }
    let before = rounds(&pair);
    wait_for(90, "three rounds over the slow network", || async {
        rounds(&pair) >= before + 3
    })
    .await;
    let status = pair.status();
    assert_eq!(status["state"], "replicating", "{status}");
    for p in &proxies {
        p.set(Mode::Pass);
    }

    models.extend(load.finish());
    assert_converged(&pair, &models).await;
}

#[tokio::test]
async fn either_server_crashing_mid_round_loses_nothing() {
    let pair = Pair::on_two_servers(SCHEMA, "chunk_keys: 1000\n").await;
    pair.add_sync_with("t", "src:source,dst:source");
    let mut daemon = pair.start_daemon();
    pair.kick_wait();
    assert!(daemon.terminate().success(), "{}", daemon.log());

    // A backlog on each side, so that rounds run long in both directions.
    let (src, dst) = (pair.src().await, pair.dst().await);
    src.batch_execute(
        "insert into t select g, 'src', 0, md5(g::text) from generate_series(1000000, 1150000) g",
    )
    .await
    .unwrap();
    dst.batch_execute(
        "insert into t select g, 'dst', 0, md5(g::text) from generate_series(2000000, 2150000) g",
    )
    .await
    .unwrap();

    let _daemon = pair.start_daemon();
    for (name, server) in [
        ("source", &pair.cluster),
        ("target", pair.dst_cluster.as_ref().unwrap()),
    ] {
        let landed = count(&pair.dst().await, "t").await + count(&pair.src().await, "t").await;
        wait_for(120, "more chunks to land", || async {
            count(&pair.dst().await, "t").await + count(&pair.src().await, "t").await > landed
        })
        .await;
        let before = errors(&pair);
        server
            .restart_immediate()
            .unwrap_or_else(|e| panic!("restart the {name} server: {e}"));
        wait_for(60, "the crash to be reported", || async {
            errors(&pair) > before
        })
        .await;
    }
    let all = 10 + 2 * 150_001;
    wait_for(300, "the backlog to drain both ways", || async {
        count(&pair.src().await, "t").await == all && count(&pair.dst().await, "t").await == all
    })
    .await;
    assert_converged(&pair, &[]).await;
}

#[tokio::test]
async fn ten_kill_9s_under_two_way_load_lose_and_double_nothing() {
    let pair = Pair::with_config(SCHEMA, "poll_interval_ms: 100\nchunk_keys: 50\n").await;
    pair.add_sync_with("t", "src:source,dst:source");
    let mut daemon = pair.start_daemon();
    pair.kick_wait();
    let load = two_way_load(&pair, 1_000_000, 150, 20, 11);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..10 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // A random point: somewhere in the next 0.2–1.2 s of rounds.
        tokio::time::sleep(Duration::from_millis(200 + rng % 1000)).await;
        daemon.kill9();
        daemon = pair.start_daemon();
    }
    let models = load.finish();
    assert_converged(&pair, &models).await;
    let out = pair.beltctl_ok(&["verify", "app"]);
    assert!(out.contains("equal"), "{out}");
}

#[tokio::test]
async fn a_source_restored_from_backup_stops_the_sync() {
    let pair = Pair::with_config(SCHEMA, "stall_timeout_ms: 5000\n").await;
    let proxy = Proxy::start(pair.server_of(SRC).port());
    pair.add_dbs_at([proxy.port(), pair.server_of(DST).port()]);
    pair.add_app_sync("t", "src:source,dst:target");
    // Age the source's server, so that a freshly restored one is well behind it.
    pair.src()
        .await
        .batch_execute("do $$ begin for i in 1..1000 loop perform txid_current(); commit; end loop; end $$")
        .await
        .unwrap();
    let mut daemon = pair.start_daemon();
    pair.src()
        .await
        .batch_execute("insert into t values (100, 'src', 0, 'before the backup')")
        .await
        .unwrap();
    pair.kick_wait();
    assert!(daemon.terminate().success(), "{}", daemon.log());

    // The source's database is restored onto a new server and its name now
    // points there.
    let restored = belt::local_cluster::LocalCluster::start().unwrap();
    restored.create_app_database(SRC, "").await.unwrap();
    let password = std::fs::read_to_string(pair.cluster.password_file()).unwrap();
    let restore = format!(
        "{}/pg_dump '{}' | {}/psql -q -v ON_ERROR_STOP=1 '{}'",
        pair.cluster.bin_dir().display(),
        pair.cluster.conninfo(SRC),
        restored.bin_dir().display(),
        restored.conninfo(SRC)
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &restore])
        .env("PGPASSWORD", password.trim())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::support::text(&out));
    let position: i64 = restored_txid(&restored).await;
    proxy.redirect(restored.port());

    let _daemon = pair.start_daemon();
    wait_for(60, "the sync to stop", || async {
        pair.status()["state"] == "failed"
    })
    .await;
    let error = pair.status()["last_error"].as_str().unwrap().to_string();
    assert!(
        error.contains("database 'src' is behind the position belt stored"),
        "{error} (restored server at txid {position})"
    );
}

async fn restored_txid(server: &belt::local_cluster::LocalCluster) -> i64 {
    belt::pg::connect(&server.db_spec("src", SRC))
        .await
        .unwrap()
        .query_one("select txid_current()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_rewritten_during_every_try_waits_and_the_rest_goes_on() {
    let pair = Pair::with_config(SCHEMA, "poll_interval_ms: 200\n").await;
    let proxy = Proxy::start(pair.server_of(DST).port());
    pair.add_dbs_at([pair.server_of(SRC).port(), proxy.port()]);
    pair.add_app_sync("t", "src:source,dst:source");
    let _daemon = pair.start_daemon();
    pair.kick_wait();
    // A slow link to the target: a chunk takes more than a second.
    proxy.set(Mode::Delay(Duration::from_millis(20)));

    // Row 1 is a counter both sides write: the source now and then, the target
    // without a pause. Every chunk holding it loses its race on the target.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for (db, pause_ms) in [(SRC, 100), (DST, 0)] {
        let (client, stop) = (pair.connect(db).await, stop.clone());
        writers.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                client
                    .execute("update t set n = n + 1 where id = 1", &[])
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
        }));
    }
    pair.src()
        .await
        .batch_execute("insert into t select g, 'src', 0, 'new' from generate_series(100, 199) g")
        .await
        .unwrap();
    let dst = pair.dst().await;
    wait_for(90, "the new rows to pass the hot one", || async {
        count(&dst, "t where v = 'new'").await == 100
    })
    .await;

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    proxy.set(Mode::Pass);
    assert_converged(&pair, &[]).await;
}
