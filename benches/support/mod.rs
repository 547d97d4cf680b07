//! What the benchmarks share: pgbench runs, sessions, delta counts, heartbeats, the
//! CPU and memory of processes, and the report table.
#![allow(dead_code)] // each benchmark uses its own part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use belt::local_cluster::{LocalCluster, APP_USER};
use belt::pg::connect;
use tokio_postgres::Client;

/// The pgbench tables belt replicates (pgbench_history has no key).
pub const TABLES: [&str; 3] = ["pgbench_accounts", "pgbench_branches", "pgbench_tellers"];

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How to run pgbench against one cluster; owned, so a run can go to a blocking
/// thread while the benchmark measures something else.
pub struct PgBench {
    bin: PathBuf,
    port: u16,
    user: &'static str,
    password: String,
    /// `PGOPTIONS`: `-c role=app_owner` when creating the tables.
    options: &'static str,
}

impl PgBench {
    /// pgbench as the application: `app_user`, DML grants only.
    pub fn of(cluster: &LocalCluster) -> PgBench {
        PgBench::as_role(cluster, APP_USER, cluster.app_password_file(), "")
    }

    /// pgbench creating the tables as their owner, `app_owner`.
    pub fn owner(cluster: &LocalCluster) -> PgBench {
        let file = cluster.password_file().to_path_buf();
        PgBench::as_role(cluster, "postgres", file, "-c role=app_owner")
    }

    pub fn as_role(
        cluster: &LocalCluster,
        user: &'static str,
        password: PathBuf,
        options: &'static str,
    ) -> PgBench {
        let bin = cluster.bin_dir().join("pgbench");
        PgBench {
            bin: if bin.is_file() {
                bin
            } else {
                PathBuf::from("pgbench")
            },
            port: cluster.port(),
            user,
            password: std::fs::read_to_string(password).unwrap().trim().to_string(),
            options,
        }
    }

    /// Runs pgbench with `args` on database bench; returns its output.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", self.user])
            .args(args)
            .arg("bench")
            .env("PGPASSWORD", &self.password)
            .env("PGOPTIONS", self.options)
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

    /// Runs tpcb-like transactions from `clients` clients, limited by `limit`
    /// (`-t N`, `-T secs`, `-R rate`…); returns the TPS pgbench reports.
    pub fn tps(&self, clients: u64, limit: &[&str]) -> f64 {
        self.counted(clients, limit).0
    }

    /// As [`PgBench::tps`]; also the number of transactions pgbench processed.
    pub fn counted(&self, clients: u64, limit: &[&str]) -> (f64, u64) {
        let clients = clients.to_string();
        let mut args = vec!["-n", "-c", &clients, "-j", "2"];
        args.extend(limit);
        let out = self.run(&args);
        let field = |prefix: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|v| v.split_whitespace().next())
                .map(str::to_string)
                .unwrap_or_else(|| panic!("no '{prefix}' in pgbench output:\n{out}"))
        };
        let tps = field("tps = ").parse().unwrap();
        let txns = field("number of transactions actually processed: ")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        (tps, txns)
    }
}

/// A session as belt's role (the superuser here): capture, deltas, comparisons.
pub async fn session(cluster: &LocalCluster) -> Client {
    let c = connect(&cluster.db_spec("bench", "bench")).await.unwrap();
    c.batch_execute("set search_path = public").await.unwrap();
    c
}

/// A session as the application's login role.
pub async fn app_session(cluster: &LocalCluster) -> Client {
    let c = connect(&cluster.app_spec("bench", "bench")).await.unwrap();
    c.batch_execute("set search_path = public; reset row_security")
        .await
        .unwrap();
    c
}

/// Database bench, owned by `app_owner`, with `app_user` granted DML on what the
/// owner creates in it.
pub async fn create_db(cluster: &LocalCluster) {
    cluster.create_app_database("bench", "").await.unwrap();
}

pub async fn pending(src: &Client) -> i64 {
    let mut total = 0;
    for t in TABLES {
        let q = format!("select count(*) from belt.{}", delta(src, t).await);
        total += src.query_one(&q, &[]).await.unwrap().get::<_, i64>(0);
    }
    total
}

pub async fn delta(src: &Client, table: &str) -> String {
    src.query_one("select quote_ident(belt.delta_name('public', $1))", &[&table])
        .await
        .unwrap()
        .get(0)
}

pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

pub fn cpu_seconds(pid: u32) -> f64 {
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

/// A running belt-syncd, measured when stopped.
pub struct Daemon(pub Child);

impl Daemon {
    /// Kills the daemon; its peak RSS in MiB and its CPU seconds.
    pub fn stop(mut self) -> (f64, f64) {
        let pid = self.0.id();
        let usage = (peak_rss_kib(pid) as f64 / 1024.0, cpu_seconds(pid));
        self.0.kill().unwrap();
        self.0.wait().unwrap();
        usage
    }
}

/// Heartbeat rows travel through the sync like application rows; their delay is
/// the replication lag an application would see.
/// Two heartbeat tables: one that sorts before the pgbench tables and one after, so
/// that rounds in per-table chunks (which commit the first table's rows before the
/// last's) are measured at both ends, not only at their best. Rows 1 and 2 are
/// written one table per transaction; rows 3 and 4 in both tables in one
/// transaction, which has arrived when the receiver shows both.
pub const HEARTBEAT: &str =
    "create table belt_heartbeat (id int primary key, n bigint not null, at timestamptz); \
     insert into belt_heartbeat select i, 0, now() from generate_series(1, 4) i; \
     create table zz_heartbeat (id int primary key, n bigint not null, at timestamptz); \
     insert into zz_heartbeat select i, 0, now() from generate_series(1, 4) i";

/// The heartbeats: the tables one transaction writes, the offset of its rows' ids,
/// and the name of its lag in the report.
pub const HEARTBEATS: [(&[&str], i32, &str); 3] = [
    (&["belt_heartbeat"], 0, ""),
    (&["zz_heartbeat"], 0, "_last_table"),
    (&["belt_heartbeat", "zz_heartbeat"], 2, "_transaction"),
];

/// Writes each heartbeat of [`HEARTBEATS`] (row `id` plus its offset, its tables in
/// one transaction) on `origin` every 50 ms, and watches for all of them on
/// `mirror` with one query every 2 ms until `stop` (one query, so that watching
/// costs the servers little); returns, per heartbeat, each one's delay in seconds
/// until every table of it showed it (a heartbeat that a later one overtook counts
/// until the later one arrived).
pub async fn heartbeat_lags(origin: Client, mirror: Client, id: i32, stop: Arc<AtomicBool>) -> Vec<Vec<f64>> {
    let latest = |tables: &[&str], id: i32| {
        let each: Vec<String> = tables
            .iter()
            .map(|t| format!("(select n from {t} where id = {id})"))
            .collect();
        format!("least({})", each.join(", "))
    };
    let read = format!(
        "select {}",
        HEARTBEATS
            .iter()
            .map(|(tables, offset, _)| latest(tables, id + offset))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let origin = Arc::new(origin);
    let mut writers = Vec::new();
    for (k, (tables, offset, _)) in HEARTBEATS.iter().enumerate() {
        let (origin, stop, row) = (origin.clone(), stop.clone(), id + offset);
        let first: i64 = origin.query_one(&read, &[]).await.unwrap().get(k);
        writers.push(tokio::spawn(async move {
            let mut writes = Vec::new();
            let mut n = first;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let updates: String = tables
                    .iter()
                    .map(|t| format!("update {t} set n = {n}, at = clock_timestamp() where id = {row}; "))
                    .collect();
                origin
                    .batch_execute(&format!("begin; {updates}commit"))
                    .await
                    .unwrap();
                writes.push((n, Instant::now()));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            writes
        }));
    }
    let mut seen: Vec<Vec<(i64, Instant)>> = vec![Vec::new(); HEARTBEATS.len()];
    while !stop.load(Ordering::SeqCst) {
        let row = mirror.query_one(&read, &[]).await.unwrap();
        let now = Instant::now();
        for (k, s) in seen.iter_mut().enumerate() {
            let n: i64 = row.get(k);
            if s.last().map(|l| l.0) != Some(n) {
                s.push((n, now));
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut lags = Vec::new();
    for (writer, seen) in writers.into_iter().zip(&seen) {
        let writes = writer.await.unwrap();
        lags.push(
            writes
                .iter()
                .filter_map(|(n, at)| {
                    let arrived = seen.iter().find(|(m, _)| m >= n)?.1;
                    Some(arrived.saturating_duration_since(*at).as_secs_f64())
                })
                .collect(),
        );
    }
    lags
}

/// p50, p99 and max of `lags`, in milliseconds.
pub fn percentiles(mut lags: Vec<f64>) -> serde_json::Value {
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| {
        lags.get(((lags.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
            * 1000.0
    };
    serde_json::json!({ "samples": lags.len(), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0) })
}

/// Waits until both databases' deltas are empty.
pub async fn drained(a: &Client, b: &Client) {
    while pending(a).await + pending(b).await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// CPU model, cores and memory of this machine, for the report.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    format!("{model}, {cores} cores, {} GiB", mem_kib / 1024 / 1024)
}

/// Prints the report as a flat two-column table.
pub fn print_report(report: &serde_json::Value) {
    pub fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() != 0.0 => out.push((prefix.into(), format!("{f:.3}"))),
                _ => out.push((prefix.into(), n.to_string())),
            },
            other => out.push((prefix.into(), other.to_string())),
        }
    }
    let mut rows = Vec::new();
    walk("", report, &mut rows);
    println!("\n| measure | value |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
}

/// Writes the daemon's config: its catalog and API socket in `dir`, then `extra`
/// (YAML lines, each ending in a newline).
pub fn write_config(config: &Path, dir: &Path, extra: &str) {
    std::fs::write(
        config,
        format!(
            "catalog: {}\nlisten: unix:{}\n{extra}",
            dir.join("belt.db").display(),
            dir.join("api.sock").display()
        ),
    )
    .unwrap();
}

/// Runs `beltctl -c config args…`; panics with its stderr when it fails.
pub fn beltctl(config: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_beltctl"))
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "beltctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `belt-syncd -c config`, its log appended to `dir/daemon.log`.
pub fn spawn_daemon(config: &Path, dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_belt-syncd"))
        .arg("-c")
        .arg(config)
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}
