//! End-to-end benchmark on two throwaway clusters, run durable like production
//! servers (run: `cargo bench --bench e2e`).
//!
//! Measures, each against its reference in the same run:
//! - write overhead: pgbench tpcb-like TPS on the source without capture, with
//!   statement-level capture triggers (belt's default) and with row-level triggers,
//!   as the median of interleaved runs (a 2-core machine drifts by ±15%);
//! - catch-up: seconds to apply the changes of `TXNS` pgbench transactions made while
//!   belt-syncd was stopped, against PostgreSQL's logical replication catching up the
//!   same backlog (a subscription disabled over the same transactions);
//! - steady lag: p50/p99/max delay of a heartbeat row under pgbench at 200 and 1 000
//!   TPS, and both ways with 200 TPS on each side;
//! - `beltctl verify` against `count(*)` on both sides;
//! - the daemon's peak RSS and CPU seconds in each run.
//!
//! Catch-up and lag are measured twice in the same run: with rounds as one
//! transaction per side (`atomic_rounds: true`, the default) and, as before that
//! existed, in per-table chunks (`atomic_rounds: false`); lag runs interleave the two.
//!
//! Prints a table and writes `target/bench-e2e.json`. Environment: `BENCH_SCALE`
//! (pgbench scale, default 10), `BENCH_TXNS` (default 80000), `BENCH_CLIENTS` (4),
//! `BENCH_LAG_SECS` (length of each lag run, 20); `BENCH_KEEP` keeps the work
//! directory and the daemon's log (all runs, appended).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use belt::capture::{self, TriggerMode};
use belt::local_cluster::LocalCluster;
use belt::pg::connect;
use belt::pg::introspect::{describe_table, TableName};
use tokio_postgres::Client;

#[path = "support/mod.rs"]
mod support;

use support::*;

struct Bench {
    source: LocalCluster,
    target: LocalCluster,
    dir: PathBuf,
    config: PathBuf,
    clients: u64,
    scale: u64,
}

impl Bench {
    /// Writes the daemon's config: rounds as one transaction per side, or in chunks.
    fn rounds(&self, atomic: bool) {
        write_config(&self.config, &self.dir, &format!("atomic_rounds: {atomic}\n"));
    }

    /// Starts the daemon and waits until `src` has no pending change; returns the
    /// seconds, the daemon's peak RSS and its CPU seconds.
    async fn catch_up(&self, src: &Client) -> (f64, f64, f64) {
        // Not in the middle of the checkpoint that the backlog's WAL started.
        self.checkpoint().await;
        let started = Instant::now();
        let daemon = Daemon(self.daemon());
        while pending(src).await > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        let (rss, cpu) = daemon.stop();
        (secs, rss, cpu)
    }

    /// A checkpoint on both clusters, so that a measured run does not start in the
    /// middle of one that the run before left behind.
    async fn checkpoint(&self) {
        for cluster in [&self.source, &self.target] {
            let admin = connect(&cluster.db_spec("admin", "postgres")).await.unwrap();
            admin.batch_execute("checkpoint").await.unwrap();
        }
    }

    fn init(&self, cluster: &LocalCluster, scale: u64) {
        PgBench::owner(cluster).run(&["-i", "-q", "-s", &scale.to_string()]);
    }

    /// Runs `txns` tpcb-like transactions; returns TPS.
    fn run_txns(&self, txns: u64) -> f64 {
        self.run(&["-t", &(txns / self.clients).to_string()])
    }

    /// Runs tpcb-like transactions for `secs` seconds; returns TPS.
    fn run_secs(&self, secs: u64) -> f64 {
        self.run(&["-T", &secs.to_string()])
    }

    fn run(&self, limit: &[&str]) -> f64 {
        PgBench::of(&self.source).tps(self.clients, limit)
    }

    fn beltctl(&self, args: &[&str]) {
        beltctl(&self.config, args)
    }

    fn daemon(&self) -> Child {
        spawn_daemon(&self.config, &self.dir)
    }
}

const REPS: usize = 3;
const SECS: u64 = 10;

/// Median TPS without capture, with statement-level and with row-level triggers,
/// the variants interleaved so that drift of the machine hits all three alike.
async fn capture_overhead(bench: &Bench) -> [f64; 3] {
    let mut src = session(&bench.source).await;
    let mut tables = Vec::new();
    for t in TABLES {
        let name = TableName {
            schema: "public".into(),
            name: t.into(),
        };
        tables.push(describe_table(&src, "src", &name).await.unwrap().unwrap());
    }
    let mut runs: [Vec<f64>; 3] = Default::default();
    for _ in 0..REPS {
        for (i, mode) in [None, Some(TriggerMode::Statement), Some(TriggerMode::Row)]
            .into_iter()
            .enumerate()
        {
            capture::uninstall_tables(&src, "src", &tables).await.unwrap();
            if let Some(mode) = mode {
                capture::install(&mut src, "src", &tables, mode).await.unwrap();
            }
            src.batch_execute("vacuum analyze").await.unwrap();
            runs[i].push(bench.run_secs(SECS));
        }
    }
    capture::uninstall_tables(&src, "src", &tables).await.unwrap();
    eprintln!("tps runs (none, statement, row): {runs:?}");
    runs.map(|mut r| {
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    })
}

async fn distinct_keys(src: &Client) -> i64 {
    let mut total = 0;
    for t in TABLES {
        let d = delta(src, t).await;
        let key = match t {
            "pgbench_accounts" => "aid",
            "pgbench_branches" => "bid",
            _ => "tid",
        };
        let q = format!("select count(distinct {key}) from belt.{d}");
        total += src.query_one(&q, &[]).await.unwrap().get::<_, i64>(0);
    }
    total
}

async fn fingerprint(c: &Client, table: &str) -> String {
    c.query_one(
        &format!("select md5(string_agg(t::text, ',' order by t::text)) from {table} t"),
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// pgbench's tpcb-like transaction on one half of the branches, tellers and
/// accounts (`side` 0 or 1): the application of each side writes its own rows, as
/// in a multi-master set-up split by region.
const HALF_TPCB: &str = "\\set half :scale / 2
\\set bid 1 + :side * :half + random(0, :half - 1)
\\set tid 1 + :side * :half * 10 + random(0, :half * 10 - 1)
\\set aid 1 + :side * :half * 100000 + random(0, :half * 100000 - 1)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
";

/// Which rows the two sides' applications write in a two-way lag run.
#[derive(Clone, Copy, PartialEq)]
enum Writers {
    /// Only the source writes.
    OneWay,
    /// Both sides run tpcb-like over all rows: every round conflicts on the
    /// branches, which both sides update many times a second.
    SameRows,
    /// Each side writes its own half of the rows ([`HALF_TPCB`]).
    OwnRows,
}

/// Steady lag under pgbench at `rate` TPS per writing side for `secs` seconds.
async fn steady_lag(bench: &Bench, rate: u64, secs: u64, writers: Writers) -> serde_json::Value {
    let two_way = writers != Writers::OneWay;
    let stop = Arc::new(AtomicBool::new(false));
    // Heartbeat 1 is written on the source, 2 on the target (two ways).
    let directions = [
        ("src_to_dst", &bench.source, &bench.target, 1),
        ("dst_to_src", &bench.target, &bench.source, 2),
    ];
    let mut watchers = Vec::new();
    for (name, origin, mirror, id) in &directions[..if two_way { 2 } else { 1 }] {
        let watch = heartbeat_lags(
            app_session(origin).await,
            app_session(mirror).await,
            *id,
            stop.clone(),
        );
        watchers.push((*name, tokio::spawn(watch)));
    }
    let mut loads = Vec::new();
    let sides: &[bool] = if two_way { &[true, false] } else { &[true] };
    let script = bench.dir.join("half_tpcb.sql");
    std::fs::write(&script, HALF_TPCB).unwrap();
    for &on_source in sides {
        let pgbench = PgBench::of(if on_source { &bench.source } else { &bench.target });
        let (clients, rate, secs) = (bench.clients, rate.to_string(), secs.to_string());
        let mut args = vec!["-R".to_string(), rate, "-T".into(), secs];
        if writers == Writers::OwnRows {
            let side = if on_source { "side=0" } else { "side=1" };
            args.extend([
                "-f".into(),
                script.display().to_string(),
                "-D".into(),
                side.into(),
                "-s".into(),
                bench.scale.to_string(),
            ]);
        }
        loads.push(tokio::task::spawn_blocking(move || {
            pgbench.tps(clients, &args.iter().map(String::as_str).collect::<Vec<_>>())
        }));
    }
    let mut tps = Vec::new();
    for l in loads {
        tps.push(l.await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    let mut result = serde_json::Map::new();
    result.insert("target_tps".into(), rate.into());
    result.insert("achieved_tps".into(), serde_json::json!(tps));
    for (name, w) in watchers {
        for (lags, (_, _, suffix)) in w.await.unwrap().into_iter().zip(HEARTBEATS) {
            result.insert(format!("{name}{suffix}"), percentiles(lags));
        }
    }
    serde_json::Value::Object(result)
}

/// PostgreSQL's logical replication of the pgbench tables from the source into
/// database `bench_lr` of the target, stopped (its slot keeps the WAL) until
/// [`LogicalReplica::catch_up`].
struct LogicalReplica {
    sub: Client,
}

const LR_TABLES: &str = "pgbench_accounts, pgbench_branches, pgbench_tellers";

impl LogicalReplica {
    async fn create(bench: &Bench) -> LogicalReplica {
        let src = session(&bench.source).await;
        src.batch_execute(&format!("create publication belt_bench for table {LR_TABLES}"))
            .await
            .unwrap();
        let password = std::fs::read_to_string(bench.source.password_file()).unwrap();
        let sub = connect(&bench.target.db_spec("lr", "bench_lr")).await.unwrap();
        sub.batch_execute("set search_path = public").await.unwrap();
        sub.batch_execute(&format!(
            "create subscription belt_bench connection 'host=127.0.0.1 port={} user=postgres dbname=bench password={}' \
             publication belt_bench with (copy_data = false)",
            bench.source.port(),
            password.trim()
        ))
        .await
        .unwrap();
        // The slot exists once the subscription is created; stop applying.
        sub.batch_execute("alter subscription belt_bench disable")
            .await
            .unwrap();
        LogicalReplica { sub }
    }

    /// Re-enables the subscription; seconds until the source's last transaction
    /// (a marker written after the backlog) is applied.
    async fn catch_up(&self, marker: &str) -> f64 {
        let started = Instant::now();
        self.sub
            .batch_execute("alter subscription belt_bench enable")
            .await
            .unwrap();
        loop {
            let done: bool = self
                .sub
                .query_one(
                    "select coalesce(rtrim(filler) = $1::text, false) from pgbench_branches where bid = 1",
                    &[&marker],
                )
                .await
                .unwrap()
                .get(0);
            if done {
                return started.elapsed().as_secs_f64();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn drop(self) {
        self.sub
            .batch_execute("drop subscription belt_bench")
            .await
            .unwrap();
    }
}

#[tokio::main]
async fn main() {
    let scale = env_or("BENCH_SCALE", 10);
    let txns = env_or("BENCH_TXNS", 80_000);
    let clients = env_or("BENCH_CLIENTS", 4);
    let lag_secs = env_or("BENCH_LAG_SECS", 20);
    let dir = std::env::temp_dir().join(format!("belt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("belt.yaml");
    let bench = Bench {
        source: LocalCluster::start().expect("start source cluster"),
        target: LocalCluster::start().expect("start target cluster"),
        dir: dir.clone(),
        config,
        clients,
        scale,
    };
    bench.rounds(true);
    // Durable like a production server (the test clusters run with fsync off).
    for cluster in [&bench.source, &bench.target] {
        cluster
            .configure("wal_level = logical\nfsync = on\nfull_page_writes = on\nshared_buffers = 256MB")
            .expect("restart with production settings");
    }
    create_db(&bench.source).await;
    create_db(&bench.target).await;
    let admin = connect(&bench.target.db_spec("admin", "postgres")).await.unwrap();
    admin.batch_execute("create database bench_lr").await.unwrap();
    eprintln!("pgbench scale {scale}, {txns} transactions, {clients} clients");

    eprintln!("capture overhead: {REPS} interleaved runs of {SECS}s per variant");
    bench.init(&bench.source, scale);
    let tps = capture_overhead(&bench).await;

    bench.init(&bench.source, scale);
    bench.init(&bench.target, scale);
    let dump = format!(
        "{}/pg_dump -s -t 'pgbench_*' '{}' | {}/psql -q -o /dev/null '{}'",
        bench.source.bin_dir().display(),
        bench.source.conninfo("bench"),
        bench.target.bin_dir().display(),
        bench.target.conninfo("bench_lr")
    );
    let password = std::fs::read_to_string(bench.source.password_file()).unwrap();
    let status = Command::new("sh")
        .args(["-c", &dump])
        .env("PGPASSWORD", password.trim())
        .status()
        .unwrap();
    assert!(status.success(), "copy the pgbench schema into bench_lr");
    for cluster in [&bench.source, &bench.target] {
        let owner = cluster.owner_session("bench").await.unwrap();
        owner.batch_execute(HEARTBEAT).await.unwrap();
    }
    copy_tables_into_lr(&bench);
    let lr = LogicalReplica::create(&bench).await;

    for (name, cluster) in [("src", &bench.source), ("dst", &bench.target)] {
        let mut args = vec!["add".to_string(), "db".into(), name.into()];
        args.extend(cluster.add_db_args("bench"));
        bench.beltctl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    // Both sides were initialized alike by pgbench -i: no copy needed.
    bench.beltctl(&[
        "add",
        "sync",
        "bench",
        "--dbs",
        "src:source,dst:target",
        "--tables",
        "all",
        "--no-copy",
    ]);
    let daemon = bench.daemon();
    bench.beltctl(&["kick", "bench", "--wait"]);
    let _ = Daemon(daemon).stop();

    eprintln!("{txns} transactions with the daemon and the subscription stopped");
    let tps_backlog_run = bench.run_txns(txns);
    let src = session(&bench.source).await;
    let marker = format!("belt-bench-{}", std::process::id());
    app_session(&bench.source)
        .await
        .execute(
            "update pgbench_branches set filler = $1 where bid = 1",
            &[&marker],
        )
        .await
        .unwrap();
    let backlog_rows = pending(&src).await;
    let backlog_keys = distinct_keys(&src).await;

    eprintln!("belt catch-up of {backlog_rows} delta rows ({backlog_keys} keys)");
    let (catch_up, catch_up_rss, catch_up_cpu) = bench.catch_up(&src).await;

    eprintln!("logical replication catch-up of the same backlog");
    bench.checkpoint().await;
    let lr_catch_up = lr.catch_up(&marker).await;
    lr.drop().await;

    // The two round modes alternate (atomic, chunked, atomic again): the first
    // catch-up after the long pgbench run is slower for reasons of the machine.
    eprintln!("{txns} transactions more, then belt catch-up with rounds in chunks only");
    bench.run_txns(txns);
    let chunked_keys = distinct_keys(&src).await;
    bench.rounds(false);
    let (chunked_catch_up, _, chunked_cpu) = bench.catch_up(&src).await;
    bench.rounds(true);
    eprintln!("{txns} transactions more, then belt catch-up as by default again");
    bench.run_txns(txns);
    let again_keys = distinct_keys(&src).await;
    let (again_catch_up, _, again_cpu) = bench.catch_up(&src).await;

    let dst = session(&bench.target).await;
    let mut equal = true;
    for t in TABLES {
        equal &= fingerprint(&src, t).await == fingerprint(&dst, t).await;
    }

    // The catch-ups left hundreds of thousands of dead rows (tables and delta
    // tables): vacuum them now, and run one lag run unmeasured, so that the
    // aftermath does not slow whichever measured run it happens to fall on.
    for cluster in [&bench.source, &bench.target] {
        let admin = connect(&cluster.db_spec("admin", "bench")).await.unwrap();
        admin.batch_execute("vacuum (analyze)").await.unwrap();
    }
    eprintln!("warm-up lag run, not measured");
    let daemon = Daemon(bench.daemon());
    bench.beltctl(&["kick", "bench", "--wait"]);
    steady_lag(&bench, 200, lag_secs / 2, Writers::OneWay).await;
    let _ = daemon.stop();
    let mut lag = serde_json::Map::new();
    let runs = [
        ("one_way_200_tps", 200, Writers::OneWay),
        ("one_way_1000_tps", 1000, Writers::OneWay),
        ("two_way_200_tps_each_own_rows", 200, Writers::OwnRows),
        ("two_way_200_tps_each", 200, Writers::SameRows),
    ];
    for (what, rate, writers) in runs {
        let two_way = writers != Writers::OneWay;
        if two_way {
            bench.beltctl(&["update", "sync", "bench", "--dbs", "src:source,dst:source"]);
        }
        for atomic in [false, true] {
            let rounds = if atomic { "atomic" } else { "chunked" };
            eprintln!("{what}, rounds {rounds}, for {lag_secs}s");
            bench.checkpoint().await;
            bench.rounds(atomic);
            let daemon = Daemon(bench.daemon());
            bench.beltctl(&["kick", "bench", "--wait"]);
            let mut r = steady_lag(&bench, rate, lag_secs, writers).await;
            if two_way {
                drained(&src, &dst).await;
                bench.beltctl(&["kick", "bench", "--wait"]);
            }
            let (rss, cpu) = daemon.stop();
            r["daemon_peak_rss_mib"] = rss.into();
            r["daemon_cpu_seconds"] = cpu.into();
            lag.insert(format!("{what}_{rounds}"), r);
        }
    }
    bench.rounds(true);

    // pgbench_history has no key: belt leaves it to cutover, so it differs here.
    for c in [&src, &dst] {
        c.batch_execute("truncate pgbench_history").await.unwrap();
    }
    eprintln!("verify vs two count(*) scans");
    let started = Instant::now();
    let verified = Command::new(env!("CARGO_BIN_EXE_beltctl"))
        .arg("-c")
        .arg(&bench.config)
        .args(["verify", "bench"])
        .output()
        .unwrap();
    let verify_secs = started.elapsed().as_secs_f64();
    let verify_equal = verified.status.success();
    let started = Instant::now();
    for t in TABLES {
        let q = format!("select count(*) from {t}");
        let (a, b) = tokio::join!(src.query_one(&q, &[]), dst.query_one(&q, &[]));
        a.unwrap();
        b.unwrap();
    }
    let count_secs = started.elapsed().as_secs_f64();

    let report = serde_json::json!({
        "machine": machine(),
        "scale": scale, "transactions": txns, "clients": clients,
        "write_overhead": {
            "tps_no_capture_median": tps[0],
            "tps_statement_triggers_median": tps[1],
            "tps_row_triggers_median": tps[2],
            "ratio_statement": tps[1] / tps[0],
            "ratio_row": tps[2] / tps[0],
            "aim": 0.85,
        },
        "catch_up": {
            "tps_during_backlog_run": tps_backlog_run,
            "backlog_delta_rows": backlog_rows,
            "backlog_keys": backlog_keys,
            "belt_seconds": catch_up,
            "belt_keys_per_second": backlog_keys as f64 / catch_up,
            "logical_replication_seconds": lr_catch_up,
            "ratio_vs_logical_replication": lr_catch_up / catch_up,
            "aim": 1.0,
            "daemon_peak_rss_mib": catch_up_rss,
            "daemon_cpu_seconds": catch_up_cpu,
            "target_equals_source": equal,
            "chunked_rounds_keys": chunked_keys,
            "chunked_rounds_seconds": chunked_catch_up,
            "chunked_rounds_keys_per_second": chunked_keys as f64 / chunked_catch_up,
            "chunked_rounds_daemon_cpu_seconds": chunked_cpu,
            "again_keys_per_second": again_keys as f64 / again_catch_up,
            "again_daemon_cpu_seconds": again_cpu,
        },
        "lag": lag,
        "verify": {
            "verify_seconds": verify_secs,
            "two_count_scans_seconds": count_secs,
            "ratio": count_secs / verify_secs,
            "equal": verify_equal,
        },
    });
    print_report(&report);
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-e2e.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("\nwritten to {}", out.display());
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!("daemon log: {}", dir.join("daemon.log").display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(equal, "target differs from source after catch-up");
    assert!(
        verify_equal,
        "verify found differences: {}",
        String::from_utf8_lossy(&verified.stdout)
    );
}

/// Copies the pgbench tables' rows into `bench_lr`, so the subscription starts from
/// the same state as belt's target.
fn copy_tables_into_lr(bench: &Bench) {
    let password = std::fs::read_to_string(bench.source.password_file()).unwrap();
    for t in ["pgbench_accounts", "pgbench_branches", "pgbench_tellers"] {
        let cmd = format!(
            "{bin}/psql -q -c '\\copy {t} to stdout' '{from}' | {bin}/psql -q -c '\\copy {t} from stdin' '{to}'",
            bin = bench.source.bin_dir().display(),
            from = bench.source.conninfo("bench"),
            to = bench.target.conninfo("bench_lr"),
        );
        let status = Command::new("sh")
            .args(["-c", &cmd])
            .env("PGPASSWORD", password.trim())
            .status()
            .unwrap();
        assert!(status.success(), "copy {t} into bench_lr");
    }
}
