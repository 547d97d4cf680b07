//! End-to-end benchmark on two throwaway clusters (run: `cargo bench --bench e2e`).
//!
//! Measures, each against its reference in the same run:
//! - pgbench tpcb-like TPS on the source without capture, with statement-level capture
//!   triggers (belt's default) and with row-level triggers (the alternative), as the
//!   median of interleaved runs (a 2-core machine drifts by ±15% between runs);
//! - catch-up: keys/s applied after `TXNS` pgbench transactions made while belt-syncd
//!   was stopped, and the daemon's peak RSS meanwhile.
//!
//! Prints a table and writes `target/bench-e2e.json`. Environment: `BENCH_SCALE`
//! (pgbench scale, default 10), `BENCH_TXNS` (default 80000), `BENCH_CLIENTS` (4).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use belt::capture::{self, TriggerMode};
use belt::local_cluster::LocalCluster;
use belt::pg::connect;
use belt::pg::introspect::{describe_table, TableName};
use tokio_postgres::Client;

const TABLES: [&str; 3] = ["pgbench_accounts", "pgbench_branches", "pgbench_tellers"];

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Bench {
    source: LocalCluster,
    target: LocalCluster,
    dir: PathBuf,
    config: PathBuf,
    clients: u64,
}

impl Bench {
    fn pgbench(&self, cluster: &LocalCluster, args: &[&str]) -> String {
        let bin = cluster.bin_dir().join("pgbench");
        let bin = if bin.is_file() {
            bin
        } else {
            PathBuf::from("pgbench")
        };
        let password = std::fs::read_to_string(cluster.password_file()).unwrap();
        let out = Command::new(bin)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &cluster.port().to_string(),
                "-U",
                "postgres",
            ])
            .args(args)
            .arg("bench")
            .env("PGPASSWORD", password.trim())
            .output()
            .expect("run pgbench (install postgresql-contrib or the pgbench package)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "pgbench {args:?} failed:\n{text}");
        text
    }

    fn init(&self, cluster: &LocalCluster, scale: u64) {
        self.pgbench(cluster, &["-i", "-q", "-s", &scale.to_string()]);
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
        let clients = self.clients.to_string();
        let mut args = vec!["-n", "-c", &clients, "-j", "2"];
        args.extend(limit);
        let out = self.pgbench(&self.source, &args);
        out.lines()
            .find(|l| l.starts_with("tps = "))
            .and_then(|l| l["tps = ".len()..].split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no tps in pgbench output:\n{out}"))
    }

    fn beltctl(&self, args: &[&str]) {
        let out = Command::new(env!("CARGO_BIN_EXE_beltctl"))
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "beltctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn daemon(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_belt-syncd"))
            .arg("-c")
            .arg(&self.config)
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.join("daemon.log")).unwrap(),
            ))
            .spawn()
            .unwrap()
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

async fn session(cluster: &LocalCluster) -> Client {
    let c = connect(&cluster.db_spec("bench", "bench")).await.unwrap();
    c.batch_execute("set search_path = public").await.unwrap();
    c
}

async fn create_db(cluster: &LocalCluster) {
    let admin = connect(&cluster.db_spec("admin", "postgres")).await.unwrap();
    admin.batch_execute("create database bench").await.unwrap();
}

async fn pending(src: &Client) -> i64 {
    let mut total = 0;
    for t in TABLES {
        let q = format!("select count(*) from belt.{}", delta(src, t).await);
        total += src.query_one(&q, &[]).await.unwrap().get::<_, i64>(0);
    }
    total
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

async fn delta(src: &Client, table: &str) -> String {
    src.query_one("select quote_ident(belt.delta_name('public', $1))", &[&table])
        .await
        .unwrap()
        .get(0)
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

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(") ")
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|x| x.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}

#[tokio::main]
async fn main() {
    let scale = env_or("BENCH_SCALE", 10);
    let txns = env_or("BENCH_TXNS", 80_000);
    let clients = env_or("BENCH_CLIENTS", 4);
    let dir = std::env::temp_dir().join(format!("belt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("belt.yaml");
    std::fs::write(
        &config,
        format!(
            "catalog: {}\nlisten: unix:{}\n",
            dir.join("belt.db").display(),
            dir.join("api.sock").display()
        ),
    )
    .unwrap();
    let bench = Bench {
        source: LocalCluster::start().expect("start source cluster"),
        target: LocalCluster::start().expect("start target cluster"),
        dir: dir.clone(),
        config,
        clients,
    };
    create_db(&bench.source).await;
    create_db(&bench.target).await;
    eprintln!("pgbench scale {scale}, {txns} transactions, {clients} clients");

    eprintln!("capture overhead: {REPS} interleaved runs of {SECS}s per variant");
    bench.init(&bench.source, scale);
    let tps = capture_overhead(&bench).await;

    bench.init(&bench.source, scale);
    bench.init(&bench.target, scale);
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
    let mut daemon = bench.daemon();
    bench.beltctl(&["kick", "bench", "--wait"]);
    daemon.kill().unwrap();
    daemon.wait().unwrap();

    eprintln!("{txns} transactions with the daemon stopped");
    let tps_backlog_run = bench.run_txns(txns);
    let src = session(&bench.source).await;
    let backlog_rows = pending(&src).await;
    let backlog_keys = distinct_keys(&src).await;

    eprintln!("catch-up of {backlog_rows} delta rows ({backlog_keys} keys)");
    let started = Instant::now();
    let daemon = bench.daemon();
    let pid = daemon.id();
    let mut peak = 0;
    let mut cpu = 0.0;
    while pending(&src).await > 0 {
        peak = peak.max(peak_rss_kib(pid));
        cpu = cpu_seconds(pid);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let catch_up = started.elapsed().as_secs_f64();
    peak = peak.max(peak_rss_kib(pid));
    let mut daemon = daemon;
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let dst = session(&bench.target).await;
    let mut equal = true;
    for t in TABLES {
        equal &= fingerprint(&src, t).await == fingerprint(&dst, t).await;
    }

    let report = serde_json::json!({
        "scale": scale, "transactions": txns, "clients": clients,
        "tps_no_capture_median": tps[0],
        "tps_statement_triggers_median": tps[1],
        "tps_row_triggers_median": tps[2],
        "ratio_statement": tps[1] / tps[0],
        "ratio_row": tps[2] / tps[0],
        "tps_during_backlog_run": tps_backlog_run,
        "backlog_delta_rows": backlog_rows,
        "backlog_keys": backlog_keys,
        "catch_up_seconds": catch_up,
        "catch_up_keys_per_second": backlog_keys as f64 / catch_up,
        "catch_up_delta_rows_per_second": backlog_rows as f64 / catch_up,
        "daemon_peak_rss_mib": peak as f64 / 1024.0,
        "daemon_cpu_seconds": cpu,
        "target_equals_source": equal,
    });
    println!("\n| measure | value |\n|---|---|");
    for (k, v) in report.as_object().unwrap() {
        let v = match v.as_f64() {
            Some(f) if f.fract() != 0.0 => format!("{f:.3}"),
            _ => v.to_string(),
        };
        println!("| {k} | {v} |");
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-e2e.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("\nwritten to {}", out.display());
    let _ = std::fs::remove_dir_all(&dir);
    assert!(equal, "target differs from source after catch-up");
}
