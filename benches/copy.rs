//! Initial-copy benchmark (run: `cargo bench --bench copy`): one table of `BENCH_ROWS`
//! rows (default 1,000,000) between two throwaway clusters, copied
//! - by two psql processes piping `COPY … TO STDOUT (FORMAT binary)` into
//!   `COPY … FROM STDIN (FORMAT binary)` (the physical reference),
//! - by belt's chunked, checkpointable copy (`belt::copy::copy_chunk`),
//! - by `pg_dump --data-only | psql`,
//!
//! best of two interleaved runs each. Prints a table and writes `target/bench-copy.json`.
//! `BENCH_CHUNK_ROWS` overrides belt's chunk size.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use belt::copy::{copy_chunk, End, Range, DEFAULT_COPY_CHUNK_ROWS};
use belt::local_cluster::LocalCluster;
use belt::pg::connect;
use belt::pg::introspect::{describe_table, TableName};
use belt::pg::KeyedTable;
use tokio_postgres::Client;

const DDL: &str = "create table big (id bigint primary key, v text, n integer, at timestamptz)";

async fn session(cluster: &LocalCluster) -> Client {
    let c = connect(&cluster.db_spec("bench", "bench")).await.unwrap();
    c.batch_execute("set search_path = public").await.unwrap();
    c
}

/// The physical reference: two psql processes (C libpq) piping binary COPY.
fn raw_pipe(source: &LocalCluster, target: &LocalCluster) {
    let mut out = psql(source, "copy public.big to stdout (format binary)")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = psql(target, "copy public.big from stdin (format binary)")
        .stdin(out.stdout.take().unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success() && out.wait().unwrap().success(),
        "psql COPY pipe failed"
    );
}

fn psql(cluster: &LocalCluster, command: &str) -> Command {
    let mut cmd = Command::new(program(cluster, "psql"));
    cmd.args([
        "-X",
        "-q",
        "-h",
        "127.0.0.1",
        "-p",
        &cluster.port().to_string(),
        "-U",
        "postgres",
        "-d",
        "bench",
        "-c",
        command,
    ])
    .env("PGPASSWORD", password(cluster));
    cmd
}

fn password(cluster: &LocalCluster) -> String {
    std::fs::read_to_string(cluster.password_file())
        .unwrap()
        .trim()
        .to_string()
}

fn program(cluster: &LocalCluster, name: &str) -> std::path::PathBuf {
    let p = cluster.bin_dir().join(name);
    if p.is_file() {
        p
    } else {
        name.into()
    }
}

async fn belt_copy(src: &mut Client, dst: &mut Client, plan: &KeyedTable) -> u64 {
    let chunk_rows = std::env::var("BENCH_CHUNK_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_COPY_CHUNK_ROWS);
    let (mut after, mut rows) = (None::<Vec<String>>, 0);
    loop {
        let c = copy_chunk(
            End {
                db: "src",
                client: src,
                fence: "",
            },
            End {
                db: "dst",
                client: dst,
                fence: "",
            },
            plan,
            Range {
                after: after.as_deref(),
                upper: None,
            },
            chunk_rows,
        )
        .await
        .unwrap();
        rows += c.rows;
        match c.last_key {
            Some(k) => after = Some(k),
            None => return rows,
        }
    }
}

fn dump_restore(source: &LocalCluster, target: &LocalCluster) {
    let mut dump = Command::new(program(source, "pg_dump"))
        .args([
            "--data-only",
            "-t",
            "public.big",
            "-h",
            "127.0.0.1",
            "-p",
            &source.port().to_string(),
            "-U",
            "postgres",
            "bench",
        ])
        .env("PGPASSWORD", password(source))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = Command::new(program(target, "psql"))
        .args([
            "-q",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &target.port().to_string(),
            "-U",
            "postgres",
            "bench",
        ])
        .env("PGPASSWORD", password(target))
        .stdin(dump.stdout.take().unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success() && dump.wait().unwrap().success(),
        "pg_dump | psql failed"
    );
}

#[tokio::main]
async fn main() {
    let rows: i64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let source = LocalCluster::start().expect("start source cluster");
    let target = LocalCluster::start().expect("start target cluster");
    // The application's table, owned by app_owner as in production; belt copies as
    // the superuser here.
    for c in [&source, &target] {
        c.create_app_database("bench", DDL).await.unwrap();
    }
    let mut src = session(&source).await;
    let mut dst = session(&target).await;
    src.batch_execute(&format!(
        "insert into big select i, md5(i::text) || md5((i * 7)::text), i % 1000, now() - i * interval '1 second' \
         from generate_series(1, {rows}) i"
    ))
    .await
    .unwrap();
    src.batch_execute("vacuum analyze big").await.unwrap();
    let name = TableName {
        schema: "public".into(),
        name: "big".into(),
    };
    let plan = KeyedTable::new(&describe_table(&src, "src", &name).await.unwrap().unwrap());
    eprintln!("{rows} rows; best of two runs each");

    let mut best = [f64::MAX; 3];
    for _ in 0..2 {
        for (i, label) in ["psql COPY binary pipe", "belt copy", "pg_dump | psql"]
            .iter()
            .enumerate()
        {
            dst.batch_execute("truncate big").await.unwrap();
            dst.batch_execute("checkpoint").await.unwrap();
            let started = Instant::now();
            match i {
                0 => raw_pipe(&source, &target),
                1 => assert_eq!(belt_copy(&mut src, &mut dst, &plan).await, rows as u64),
                _ => dump_restore(&source, &target),
            }
            let secs = started.elapsed().as_secs_f64();
            eprintln!("  {label}: {secs:.2}s");
            best[i] = best[i].min(secs);
        }
    }
    let report = serde_json::json!({
        "rows": rows,
        "raw_pipe_seconds": best[0],
        "belt_seconds": best[1],
        "pg_dump_psql_seconds": best[2],
        "belt_vs_raw_ratio": best[0] / best[1],
        "belt_vs_pg_dump_ratio": best[2] / best[1],
    });
    println!("\n| method | seconds | rows/s | throughput vs raw pipe |\n|---|---|---|---|");
    for (label, secs) in [
        ("psql COPY binary pipe", best[0]),
        ("belt copy", best[1]),
        ("pg_dump | psql", best[2]),
    ] {
        println!(
            "| {label} | {secs:.2} | {:.0} | {:.2} |",
            rows as f64 / secs,
            best[0] / secs
        );
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-copy.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("\nwritten to {}", out.display());
}
