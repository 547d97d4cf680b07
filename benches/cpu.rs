//! CPU per replicated change, with the servers CPU-bound (run: `cargo bench --bench cpu`).
//!
//! The e2e benchmark runs its servers durable: each commit waits for its flush and
//! the CPU has room to spare. Here they run with `fsync = off`, like a server on fast
//! NVMe with many clients: every cycle belt spends — in its triggers, in the backends
//! serving it, in the daemon — is a transaction the application does not run. Two
//! clusters and the daemon on this machine; pgbench tpcb-like as the application
//! (`app_user`) on the source at full speed, `BENCH_CLIENTS` clients; belt's sync
//! runs both ways (two sources), as in a multi-master migration.
//!
//! Variants, interleaved, each `BENCH_REPS` times for `BENCH_SECS` seconds:
//! - `none`: no capture, nothing replicating, the reference of each repetition;
//! - `logical`: PostgreSQL's logical replication of the pgbench tables into database
//!   `bench_lr` on the target (a subscription created for the run, dropped after);
//! - `capture`: belt's triggers installed, the daemon stopped (its backlog is then
//!   drained, unmeasured);
//! - `belt`: the daemon replicating.
//!
//! For each: TPS, TPS kept (against `none` of the same repetition; medians), and CPU
//! seconds per 1 000 replicated changes (three keyed rows per transaction) of each
//! whole cluster, of the daemon, and of the backends that serve the replication
//! (belt's sessions; the walsender and the apply worker), counted from the start of
//! the run until the target has every change, and the seconds that took after the
//! run; and of the application's own backends on the source while pgbench runs
//! (what the triggers, and the snapshots rounds hold open, cost the application). The no-capture and logical runs change rows that belt never sees, so the
//! databases are not compared here (the e2e benchmark compares them).
//!
//! Prints a table and writes `target/bench-cpu.json`. Environment: `BENCH_SCALE`
//! (10), `BENCH_CLIENTS` (4), `BENCH_SECS` (20), `BENCH_REPS` (3), `BENCH_KEEP`.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use belt::capture::{self, TriggerMode};
use belt::local_cluster::LocalCluster;
use belt::pg::connect;
use belt::pg::introspect::{describe_table, TableInfo, TableName};
use support::*;
use tokio_postgres::Client;

/// What runs beside the application in one measured run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Variant {
    None,
    Logical,
    Capture,
    Belt,
}

const VARIANTS: [Variant; 4] = [Variant::None, Variant::Logical, Variant::Capture, Variant::Belt];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::None => "no replication",
            Variant::Logical => "PostgreSQL logical replication (one way)",
            Variant::Capture => "belt capture installed, daemon stopped",
            Variant::Belt => "belt replicating (a sync with two sources)",
        }
    }
}

/// One measured run.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Run {
    tps: f64,
    changes: u64,
    /// CPU seconds of all of each cluster's processes.
    cluster_cpu: [f64; 2],
    daemon_cpu: f64,
    /// CPU seconds of the backends serving the replication, on each cluster.
    serving_cpu: [f64; 2],
    /// CPU seconds of the application's backends on the source (pgbench's sessions),
    /// sampled while they run: what capture and held snapshots cost the application.
    app_cpu: f64,
    /// Seconds from the end of the pgbench run until the target had every change.
    drain_secs: f64,
    /// p50 and p99 lag of a heartbeat transaction, ms (`belt` runs of the curve).
    lag_ms: Option<[f64; 2]>,
}

struct Bench {
    clusters: [LocalCluster; 2],
    dir: PathBuf,
    config: PathBuf,
    clients: u64,
    secs: u64,
    tables: Vec<TableInfo>,
}

#[tokio::main]
async fn main() {
    let scale = env_or("BENCH_SCALE", 10);
    let clients = env_or("BENCH_CLIENTS", 4);
    let secs = env_or("BENCH_SECS", 20);
    let reps = env_or("BENCH_REPS", 3) as usize;
    let dir = std::env::temp_dir().join(format!("belt-bench-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clusters = [
        LocalCluster::start().expect("start source cluster"),
        LocalCluster::start().expect("start target cluster"),
    ];
    for cluster in &clusters {
        // CPU-bound: commits do not wait for the disk (the test clusters' fsync = off).
        cluster
            .configure(&format!(
                "wal_level = logical\nshared_buffers = 256MB\nmax_wal_size = 4GB\n{}",
                statements_conf()
            ))
            .expect("restart with logical decoding");
        create_db(cluster).await;
        PgBench::owner(cluster).run(&["-i", "-q", "-s", &scale.to_string()]);
        let owner = cluster.owner_session("bench").await.unwrap();
        owner.batch_execute(HEARTBEAT).await.unwrap();
    }
    let [src_cluster, dst_cluster] = &clusters;
    let admin = connect(&dst_cluster.db_spec("admin", "postgres")).await.unwrap();
    admin.batch_execute("create database bench_lr").await.unwrap();
    copy_into_lr(src_cluster, dst_cluster);
    let src = bench_session(src_cluster, "bench").await;
    src.batch_execute(&format!(
        "create publication belt_bench for table {}",
        TABLES.join(", ")
    ))
    .await
    .unwrap();
    let mut tables = Vec::new();
    for t in TABLES {
        let name = TableName {
            schema: "public".into(),
            name: t.into(),
        };
        tables.push(describe_table(&src, "src", &name).await.unwrap().unwrap());
    }
    let config = dir.join("belt.yaml");
    let bench = Bench {
        clusters,
        dir: dir.clone(),
        config,
        clients,
        secs,
        tables,
    };
    bench.round_interval(None);
    for (name, cluster) in ["src", "dst"].iter().zip(&bench.clusters) {
        let mut args = vec!["add".to_string(), "db".into(), name.to_string()];
        args.extend(cluster.add_db_args("bench"));
        bench.beltctl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    // Both sides were initialized alike by pgbench -i: no copy needed.
    bench.beltctl(&[
        "add",
        "sync",
        "bench",
        "--dbs",
        "src:source,dst:source",
        "--tables",
        "all",
        "--no-copy",
    ]);
    let daemon = bench.daemon();
    bench.beltctl(&["kick", "bench", "--wait"]);
    let _ = daemon.stop();

    if let Ok(intervals) = std::env::var("BENCH_INTERVALS") {
        let intervals: Vec<u64> = intervals.split(',').map(|i| i.trim().parse().unwrap()).collect();
        interval_curve(&bench, &intervals, reps).await;
        return;
    }
    eprintln!("pgbench scale {scale}, {clients} clients, fsync off: {reps} x {secs} s per variant");
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); VARIANTS.len()];
    for rep in 0..reps {
        for (v, variant) in VARIANTS.into_iter().enumerate() {
            let run = bench.measure(variant, false).await;
            eprintln!(
                "rep {rep}: {:<44} {:>7.0} tps, {:.3} s cpu of the source cluster per 1000 changes",
                variant.name(),
                run.tps,
                run.cluster_cpu[0] / run.changes as f64 * 1000.0
            );
            runs[v].push(run);
        }
    }
    let report = report(&runs);
    print_table(&report);
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-cpu.json");
    let json = serde_json::json!({
        "machine": machine(), "scale": scale, "clients": clients, "secs": secs,
        "summary": report, "runs": runs,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("\nwritten to {}", out.display());
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!("daemon log: {}", dir.join("daemon.log").display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

impl Bench {
    fn source(&self) -> &LocalCluster {
        &self.clusters[0]
    }

    /// Runs pgbench once beside `variant`; what it cost, counted until the target has
    /// every change.
    async fn measure(&self, variant: Variant, lag: bool) -> Run {
        let mut src = bench_session(self.source(), "bench").await;
        let dst = bench_session(&self.clusters[1], "bench").await;
        capture::uninstall_tables(&src, "src", &self.tables)
            .await
            .unwrap();
        if variant == Variant::Capture {
            capture::install(&mut src, "src", &self.tables, TriggerMode::Statement)
                .await
                .unwrap();
        }
        let mut daemon = None;
        let mut lr = None;
        match variant {
            Variant::Belt => {
                // Installs the capture it needs; the previous run's backlog is gone.
                let d = self.daemon();
                self.beltctl(&["kick", "bench", "--wait"]);
                drained(&src, &dst).await;
                daemon = Some(d);
            }
            Variant::Logical => lr = Some(Logical::start(self).await),
            _ => {}
        }
        for cluster in &self.clusters {
            let admin = bench_session(cluster, "bench").await;
            admin.batch_execute("vacuum analyze").await.unwrap();
            admin.batch_execute("checkpoint").await.unwrap();
        }
        let serving = match (&lr, &daemon) {
            (Some(lr), _) => [vec![lr.walsender], vec![lr.worker]],
            (_, Some(_)) => [belt_backends(&src).await, belt_backends(&dst).await],
            _ => Default::default(),
        };
        let daemon_pid = daemon.as_ref().map(|d| d.0.id());
        let before = self.cpu(&serving, daemon_pid).await;
        if variant == Variant::Belt && !statements_conf().is_empty() {
            for c in [&src, &dst] {
                c.batch_execute(
                    "create extension if not exists pg_stat_statements; select pg_stat_statements_reset()",
                )
                .await
                .unwrap();
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let watch = if lag {
            let (origin, mirror) = (
                app_session(self.source()).await,
                app_session(&self.clusters[1]).await,
            );
            Some(tokio::spawn(heartbeat_lags(origin, mirror, 1, stop.clone())))
        } else {
            None
        };
        let pgbench = PgBench::of(self.source());
        let (clients, secs) = (self.clients, self.secs.to_string());
        let app = app_backends_cpu(postmaster_of(self.source()).await, stop.clone());
        let (tps, txns) = tokio::task::spawn_blocking(move || pgbench.counted(clients, &["-T", &secs]))
            .await
            .unwrap();
        stop.store(true, Ordering::SeqCst);
        let app_cpu = app.join().unwrap();
        let lag_ms = match watch {
            Some(w) => {
                let lags = w.await.unwrap().swap_remove(2);
                let p = percentiles(lags);
                Some([p["p50_ms"].as_f64().unwrap(), p["p99_ms"].as_f64().unwrap()])
            }
            None => None,
        };
        let ended = Instant::now();
        match variant {
            Variant::Belt => drained(&src, &dst).await,
            Variant::Logical => lr.as_ref().unwrap().caught_up(self.source()).await,
            _ => {}
        }
        let drain_secs = ended.elapsed().as_secs_f64();
        let after = self.cpu(&serving, daemon_pid).await;
        let diff = |i: usize| after[i] - before[i];
        if variant == Variant::Belt && !statements_conf().is_empty() {
            for (name, c) in [("source", &src), ("target", &dst)] {
                print_statements(name, c).await;
            }
        }
        if let Some(lr) = lr {
            lr.stop().await;
        }
        if let Some(d) = daemon {
            let _ = d.stop();
        }
        if variant == Variant::Capture {
            // Drained by the daemon, unmeasured, so the next run starts from nothing.
            let d = self.daemon();
            self.beltctl(&["kick", "bench", "--wait"]);
            drained(&src, &dst).await;
            let _ = d.stop();
        }
        Run {
            tps,
            changes: txns * TABLES.len() as u64,
            cluster_cpu: [diff(0), diff(1)],
            daemon_cpu: diff(2),
            serving_cpu: [diff(3), diff(4)],
            app_cpu,
            drain_secs,
            lag_ms,
        }
    }

    /// Writes the daemon's config, with `round_interval_ms` when given.
    fn round_interval(&self, ms: Option<u64>) {
        let interval = ms
            .map(|ms| format!("round_interval_ms: {ms}\n"))
            .unwrap_or_default();
        write_config(&self.config, &self.dir, &interval);
    }

    /// CPU seconds so far: each cluster, the daemon, the serving backends on each.
    async fn cpu(&self, serving: &[Vec<u32>; 2], daemon: Option<u32>) -> [f64; 5] {
        let mut clusters = [0.0; 2];
        for (i, cluster) in self.clusters.iter().enumerate() {
            clusters[i] = cluster_cpu_seconds(cluster).await;
        }
        let sum = |pids: &[u32]| pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
        [
            clusters[0],
            clusters[1],
            daemon.map_or(0.0, cpu_seconds),
            sum(&serving[0]),
            sum(&serving[1]),
        ]
    }

    fn beltctl(&self, args: &[&str]) {
        beltctl(&self.config, args)
    }

    fn daemon(&self) -> Daemon {
        Daemon(spawn_daemon(&self.config, &self.dir))
    }
}

/// `BENCH_STATEMENTS=1`: pg_stat_statements on both clusters, and the statements
/// that took the most time during each `belt` run printed (it costs time itself).
fn statements_conf() -> &'static str {
    if std::env::var_os("BENCH_STATEMENTS").is_some() {
        "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track_planning = on"
    } else {
        ""
    }
}

/// The statements of the last run that took the most time on one cluster, and the
/// delta tables' size and dead rows.
async fn print_statements(name: &str, c: &Client) {
    let rows = c
        .query(
            "select calls, round((total_plan_time + total_exec_time)::numeric, 1)::float8, \
                    round(total_plan_time::numeric, 1)::float8, left(regexp_replace(query, '\\s+', ' ', 'g'), 160) \
               from pg_stat_statements order by total_plan_time + total_exec_time desc limit 25",
            &[],
        )
        .await
        .unwrap();
    eprintln!("{name}: calls | ms total | ms planning | statement");
    for r in rows {
        let (calls, total, plan, q): (i64, f64, f64, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
        eprintln!("  {calls} | {total} | {plan} | {q}");
    }
    for r in c
        .query(
            "select relname, pg_relation_size(relid), n_live_tup, n_dead_tup, autovacuum_count \
               from pg_stat_user_tables where schemaname = 'belt' order by 1",
            &[],
        )
        .await
        .unwrap()
    {
        let (t, size, live, dead, vacuums): (String, i64, i64, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        eprintln!("  {t}: {size} bytes, {live} live, {dead} dead, {vacuums} autovacuums");
    }
}

/// CPU per change against lag: belt replicating under the same load with each
/// `round_interval_ms` of `intervals`, interleaved, `reps` times; prints a table.
async fn interval_curve(bench: &Bench, intervals: &[u64], reps: usize) {
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); intervals.len()];
    for rep in 0..reps {
        for (i, &ms) in intervals.iter().enumerate() {
            bench.round_interval(Some(ms));
            let run = bench.measure(Variant::Belt, true).await;
            eprintln!(
                "rep {rep}: round_interval_ms {ms}: {:.0} tps, lag p50/p99 {:?} ms",
                run.tps, run.lag_ms
            );
            runs[i].push(run);
        }
    }
    println!("\n| round_interval_ms | TPS | CPU s per 1 000 changes: source cluster / target cluster | daemon | serving backends, source / target | lag p50 / p99, ms |");
    println!("|---|---|---|---|---|---|");
    for (ms, rs) in intervals.iter().zip(&runs) {
        let m = |f: &dyn Fn(&Run) -> f64| median(rs.iter().map(f).collect());
        let k = |r: &Run, cpu: f64| cpu / r.changes as f64 * 1000.0;
        println!(
            "| {ms} | {:.0} | {:.3} / {:.3} | {:.3} | {:.3} / {:.3} | {:.0} / {:.0} |",
            m(&|r| r.tps),
            m(&|r| k(r, r.cluster_cpu[0])),
            m(&|r| k(r, r.cluster_cpu[1])),
            m(&|r| k(r, r.daemon_cpu)),
            m(&|r| k(r, r.serving_cpu[0])),
            m(&|r| k(r, r.serving_cpu[1])),
            m(&|r| r.lag_ms.unwrap()[0]),
            m(&|r| r.lag_ms.unwrap()[1]),
        );
    }
}

/// A session as the superuser, named `bench` so that it is not counted as belt's.
async fn bench_session(cluster: &LocalCluster, dbname: &str) -> Client {
    let c = connect(&cluster.db_spec("bench", dbname)).await.unwrap();
    c.batch_execute("set search_path = public; set application_name = 'bench'")
        .await
        .unwrap();
    c
}

/// The backends of belt-syncd's sessions.
async fn belt_backends(c: &Client) -> Vec<u32> {
    c.query(
        "select pid from pg_stat_activity where application_name = 'belt'",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<_, i32>(0) as u32)
    .collect()
}

/// The pid of a cluster's postmaster: the parent of a backend.
async fn postmaster_of(cluster: &LocalCluster) -> u32 {
    let c = bench_session(cluster, "postgres").await;
    let backend: i32 = c.query_one("select pg_backend_pid()", &[]).await.unwrap().get(0);
    stat_fields(backend as u32)[1].parse::<u32>().unwrap()
}

/// Samples, every 100 ms until `stop`, the CPU seconds of the application's backends
/// (`app_user`'s sessions) under `postmaster`; their sum when stopped. Sampled, not
/// read at the end: pgbench's backends exit with it.
fn app_backends_cpu(postmaster: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut seen: std::collections::HashMap<u32, (f64, f64)> = Default::default();
        loop {
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                    continue;
                };
                if stat_fields(pid).get(1).and_then(|p| p.parse::<u32>().ok()) != Some(postmaster) {
                    continue;
                }
                let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if title.starts_with(b"postgres: app_user ") {
                    let now = cpu_seconds(pid);
                    seen.entry(pid).or_insert((now, now)).1 = now;
                }
            }
            if stop.load(Ordering::SeqCst) {
                return seen.values().map(|(first, last)| last - first).sum();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// CPU seconds of a whole cluster: the postmaster, its children, and the children
/// that have exited (the postmaster reaps them, so their time is in its own).
async fn cluster_cpu_seconds(cluster: &LocalCluster) -> f64 {
    let postmaster = postmaster_of(cluster).await;
    let mut ticks: f64 = stat_fields(postmaster)[11..15]
        .iter()
        .map(|f| f.parse::<f64>().unwrap())
        .sum();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let fields = stat_fields(pid);
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(postmaster) {
            ticks += fields[11..13]
                .iter()
                .map(|f| f.parse::<f64>().unwrap())
                .sum::<f64>();
        }
    }
    ticks / 100.0
}

/// `/proc/PID/stat` after the command name: state, ppid, … (empty when gone).
fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(") ")
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// A subscription of `bench_lr` on the target to the source's pgbench tables, made
/// for one run.
struct Logical {
    sub: Client,
    walsender: u32,
    worker: u32,
}

impl Logical {
    async fn start(bench: &Bench) -> Logical {
        let src = bench.source();
        let password = std::fs::read_to_string(src.password_file()).unwrap();
        let sub = bench_session(&bench.clusters[1], "bench_lr").await;
        sub.batch_execute(&format!(
            "create subscription belt_bench connection 'host=127.0.0.1 port={} user=postgres dbname=bench password={}' \
             publication belt_bench with (copy_data = false)",
            src.port(),
            password.trim()
        ))
        .await
        .unwrap();
        let publisher = bench_session(src, "bench").await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let walsender = publisher
                .query_opt(
                    "select pid from pg_stat_replication where state = 'streaming'",
                    &[],
                )
                .await
                .unwrap();
            let worker = sub
                .query_opt(
                    "select pid from pg_stat_subscription where subname = 'belt_bench' and relid is null and pid is not null",
                    &[],
                )
                .await
                .unwrap();
            if let (Some(w), Some(a)) = (walsender, worker) {
                return Logical {
                    sub,
                    walsender: w.get::<_, i32>(0) as u32,
                    worker: a.get::<_, i32>(0) as u32,
                };
            }
            assert!(
                Instant::now() < deadline,
                "the subscription did not start streaming"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a marker written on the source after the run has arrived.
    async fn caught_up(&self, src: &LocalCluster) {
        let marker = format!("{:?}", Instant::now());
        app_session(src)
            .await
            .execute(
                "update pgbench_branches set filler = $1 where bid = 1",
                &[&marker],
            )
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
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) {
        self.sub
            .batch_execute("drop subscription belt_bench")
            .await
            .unwrap();
    }
}

/// Copies the pgbench schema and rows into `bench_lr`.
fn copy_into_lr(src: &LocalCluster, dst: &LocalCluster) {
    let password = std::fs::read_to_string(src.password_file()).unwrap();
    let bin = src.bin_dir().display();
    let cmd = format!(
        "{bin}/pg_dump -t 'pgbench_*' '{}' | {bin}/psql -q -o /dev/null '{}'",
        src.conninfo("bench"),
        dst.conninfo("bench_lr")
    );
    let status = Command::new("sh")
        .args(["-c", &cmd])
        .env("PGPASSWORD", password.trim())
        .status()
        .unwrap();
    assert!(status.success(), "copy the pgbench tables into bench_lr");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Per variant: median TPS, TPS kept, and CPU per 1 000 changes.
fn report(runs: &[Vec<Run>]) -> serde_json::Value {
    let per_k = |r: &Run, cpu: f64| cpu / r.changes as f64 * 1000.0;
    let rows: Vec<serde_json::Value> = VARIANTS
        .iter()
        .zip(runs)
        .map(|(v, rs)| {
            let kept = rs
                .iter()
                .zip(&runs[0])
                .map(|(r, base)| r.tps / base.tps)
                .collect();
            let m = |f: &dyn Fn(&Run) -> f64| median(rs.iter().map(f).collect());
            serde_json::json!({
                "variant": v.name(),
                "tps": m(&|r| r.tps),
                "kept": median(kept),
                "cpu_per_1000_changes": {
                    "source_cluster": m(&|r| per_k(r, r.cluster_cpu[0])),
                    "target_cluster": m(&|r| per_k(r, r.cluster_cpu[1])),
                    "daemon": m(&|r| per_k(r, r.daemon_cpu)),
                    "serving_source": m(&|r| per_k(r, r.serving_cpu[0])),
                    "serving_target": m(&|r| per_k(r, r.serving_cpu[1])),
                    "application_source": m(&|r| per_k(r, r.app_cpu)),
                },
                "drain_seconds": m(&|r| r.drain_secs),
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}

fn print_table(report: &serde_json::Value) {
    println!(
        "\n| | TPS | kept | CPU s per 1 000 changes: source cluster / target cluster | application's backends, source | daemon | serving backends, source / target | drain s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in report.as_array().unwrap() {
        let c = &row["cpu_per_1000_changes"];
        let f = |v: &serde_json::Value| v.as_f64().unwrap();
        println!(
            "| {} | {:.0} | {:.2} | {:.3} / {:.3} | {:.3} | {:.3} | {:.3} / {:.3} | {:.2} |",
            row["variant"].as_str().unwrap(),
            f(&row["tps"]),
            f(&row["kept"]),
            f(&c["source_cluster"]),
            f(&c["target_cluster"]),
            f(&c["application_source"]),
            f(&c["daemon"]),
            f(&c["serving_source"]),
            f(&c["serving_target"]),
            f(&row["drain_seconds"]),
        );
    }
}
