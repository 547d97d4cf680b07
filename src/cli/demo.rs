//! `beltctl demo`: the whole story on two throwaway local clusters — precheck, setup
//! (schema, copy while the application writes, indexes), then replication both ways
//! under live writes on both sides, and proof that the two databases are equal.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use tokio_postgres::Client;

use super::CliError;
use crate::catalog::{Catalog, CopyState, Member, Role, SyncDef, SyncState};
use crate::config::Config;
use crate::local_cluster::{LocalCluster, APP_USER};
use crate::migrate::precheck::{precheck, Level};
use crate::pg::connect;
use crate::tables::{self, Selection};

/// Arguments of `beltctl demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the applications keep writing once replication runs, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

const SHOP: &str = "
create table customers (id serial primary key, name text not null, email text unique);
create table products (id serial primary key, name text not null, price numeric(10, 2) not null);
create table orders (
    id bigserial primary key,
    customer_id integer not null references customers (id),
    status text not null default 'new',
    placed_at timestamptz not null default now()
);
create table order_lines (
    order_id bigint references orders (id) on delete cascade,
    line_no integer,
    product_id integer not null references products (id),
    qty integer not null,
    primary key (order_id, line_no)
);";

const SEED: &str = "
insert into customers (name, email) select 'customer ' || i, 'c' || i || '@example.com' from generate_series(1, 500) i;
insert into products (name, price) select 'product ' || i, (random() * 100)::numeric(10, 2) + 1 from generate_series(1, 50) i;
insert into orders (customer_id) select 1 + i % 500 from generate_series(1, 20000) i;
insert into order_lines select o.id, g, 1 + (o.id + g) % 50, 1 + g from orders o, generate_series(1, 3) g;
analyze;";

/// The other side's application: edits customers and prices, never inserts (two
/// sources handing out the same serial ids would collide; see DESIGN rule 7).
const WRITE_TARGET: &str = "
update customers set name = 'renamed on target ' || id where id = 1 + (random() * 499)::int;
update products set price = price - 0.01 where id = 1 + (random() * 49)::int;";

const WRITE: &str = "
with o as (insert into orders (customer_id) values (1 + (random() * 499)::int) returning id)
insert into order_lines (order_id, line_no, product_id, qty)
select o.id, g, 1 + (random() * 49)::int, 1 + (random() * 4)::int
  from o, generate_series(1, 1 + (random() * 2)::int) g;
update products set price = price + 0.01 where id = 1 + (random() * 49)::int;
update orders set status = 'shipped' where id = (select max(id) - 3 from orders);
delete from orders where id = (select min(id) from orders) and random() < 0.3;";

const TABLES: [&str; 4] = ["customers", "products", "orders", "order_lines"];

fn step(n: u32, text: &str) {
    println!("[{n}/7] {text}");
}

fn failed(what: &str) -> impl FnOnce(String) -> CliError + '_ {
    move |e| CliError::Failed(format!("demo: {what}: {e}"))
}

async fn exec(client: &Client, sql: &str, what: &str) -> Result<(), CliError> {
    // As an application must: a transaction chosen as a deadlock's victim is run
    // again. belt's apply gives up its own lock waits first (`lock_timeout` under
    // `deadlock_timeout`), but when its round held the row the application waits for
    // half a second before it waited itself, the application's check comes first.
    let mut tries = 0;
    loop {
        match client.batch_execute(sql).await {
            Err(e)
                if tries < 3 && e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) =>
            {
                tries += 1;
            }
            done => return done.map_err(|e| failed(what)(crate::pg::error::render(&e))),
        }
    }
}

/// Runs the demo; everything it creates is removed when it ends.
pub async fn run(args: DemoArgs) -> Result<ExitCode, CliError> {
    println!("belt demo: move a live shop database to another server, both ways at once\n");
    step(
        1,
        "starting two throwaway clusters from the local PostgreSQL binaries",
    );
    let source = LocalCluster::start().map_err(|e| failed("start source cluster")(e.to_string()))?;
    let target = LocalCluster::start().map_err(|e| failed("start target cluster")(e.to_string()))?;
    println!(
        "      source 127.0.0.1:{}, target 127.0.0.1:{}",
        source.port(),
        target.port()
    );

    step(
        2,
        "creating the shop on the source: customers, products, 20,000 orders with lines; the target is empty",
    );
    let owner = source
        .create_app_database("shop", SHOP)
        .await
        .map_err(|e| failed("create the shop")(e.to_string()))?;
    exec(&owner, SEED, "seed data").await?;
    target
        .create_app_database("shop", "")
        .await
        .map_err(|e| failed("create the target database")(e.to_string()))?;
    println!("      the shop writes as {APP_USER}: owns nothing, holds only SELECT/INSERT/UPDATE/DELETE");
    let writer = app_session(&source).await?;

    step(3, "beltctl add db src …; add db dst …; add sync shop --dbs src:source,dst:source; beltctl precheck shop");
    let dir = std::env::temp_dir().join(format!("belt-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| failed("create work directory")(e.to_string()))?;
    let config = Config {
        catalog: dir.join("belt.db"),
        listen: format!("unix:{}", dir.join("api.sock").display()),
        ..Config::default()
    };
    let mut catalog = Catalog::open(&config.catalog)?;
    let (src_spec, dst_spec) = (source.db_spec("src", "shop"), target.db_spec("dst", "shop"));
    catalog.add_db(&src_spec)?;
    catalog.add_db(&dst_spec)?;
    let (src, dst) = (connect(&src_spec).await?, connect(&dst_spec).await?);
    let all = Selection::All {
        schema: Some("public".into()),
    };
    let tables = tables::resolve(&src, "src", &dst, "dst", &all, true).await?;
    let def = SyncDef {
        name: "shop".into(),
        members: vec![
            Member {
                db: "src".into(),
                role: Role::Source,
            },
            Member {
                db: "dst".into(),
                role: Role::Source,
            },
        ],
        conflict: crate::engine::Strategy::Latest,
        group: None,
        paused: false,
        kick_seq: 0,
        copy: CopyState::Pending,
        tables_all: Some("public".into()),
        shard: None,
    };
    let report = precheck(&def, [&src_spec, &dst_spec], [&src, &dst], &tables).await?;
    let count = |l: Level| report.findings.iter().filter(|f| f.level == l).count();
    println!(
        "      precheck: {} — {} checks ok, {} warnings, {} blockers",
        if report.blocked() { "BLOCKED" } else { "ready" },
        count(Level::Ok),
        count(Level::Warning),
        count(Level::Blocker)
    );
    for t in &report.tables {
        println!(
            "      {:<12} {:<24} ~{} rows, {}",
            t.table, t.key, t.rows_estimate, t.size
        );
    }
    catalog.add_sync(&def, &tables)?;

    step(4, "beltctl setup shop --wait: belt-syncd copies the schema, installs capture, copies the rows while the shop keeps taking orders, then builds indexes");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(crate::daemon::run_until(config, async {
        let _ = stop_rx.await;
    }));
    let started = Instant::now();
    let mut phase = String::new();
    let mut orders = 0u64;
    loop {
        let s = catalog.status("shop")?;
        if s.state == SyncState::Failed {
            return Err(CliError::Failed(format!(
                "demo: setup failed: {}",
                s.last_error.unwrap_or_default()
            )));
        }
        let now = s.phase();
        if now != phase && !now.starts_with("copying")
            || (now.starts_with("copying") && !phase.starts_with("copying"))
        {
            println!("      {:>5.1}s  {now}", started.elapsed().as_secs_f64());
            phase = now;
        }
        if s.is_replicating() {
            println!(
                "      {:>5.1}s  replicating; {} rows copied, {orders} orders placed meanwhile",
                started.elapsed().as_secs_f64(),
                s.copy_rows
            );
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(CliError::Failed("demo: setup did not finish within 120s".into()));
        }
        exec(&writer, WRITE, "write").await?;
        orders += 1;
    }

    step(
        5,
        &format!(
            "both applications write for {}s: orders on the source, edits on both sides",
            args.seconds
        ),
    );
    let other = app_session(&target).await?;
    let started = Instant::now();
    let mut next_report = Duration::from_secs(1);
    while started.elapsed() < Duration::from_secs(args.seconds) {
        exec(&writer, WRITE, "write on the source").await?;
        exec(&other, WRITE_TARGET, "write on the target").await?;
        if started.elapsed() >= next_report {
            let s = catalog.status("shop")?;
            let lag: Vec<String> = s
                .directions
                .iter()
                .map(|d| format!("{} → {} lag {:.2}s", d.from, d.to, d.lag_seconds))
                .collect();
            println!(
                "      t={:>2}s  rows applied {:>6}  conflicts {:>3}  {}",
                next_report.as_secs(),
                s.rows_applied,
                s.conflicts,
                lag.join(", ")
            );
            next_report += Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    step(6, "applications stopped; waiting for the last round");
    let kick = catalog.kick("shop")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while catalog.status("shop")?.kick_done < kick || catalog.status("shop")?.pending_rows > 0 {
        if Instant::now() > deadline {
            return Err(CliError::Failed(
                "demo: the last round did not finish within 60s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    step(7, "comparing every table on both sides");
    let mut equal = true;
    for t in TABLES {
        let (a, b) = (fingerprint(&writer, t).await?, fingerprint(&other, t).await?);
        let mark = if a == b { "equal" } else { "DIFFERENT" };
        equal &= a == b;
        println!(
            "      {t:<12} {:>6} rows on the source, {:>6} on the target: {mark}",
            a.0, b.0
        );
    }
    let conflicts = catalog.status("shop")?.conflicts;
    let _ = stop_tx.send(());
    let _ = daemon.await;
    let _ = std::fs::remove_dir_all(&dir);
    if !equal {
        return Err(CliError::Failed("demo: the databases differ".into()));
    }
    println!("\ndone: every write reached the other side; {conflicts} keys written on both sides went to the later write. Clusters and catalog removed.");
    Ok(ExitCode::SUCCESS)
}

/// A session as the application's login role.
async fn app_session(cluster: &LocalCluster) -> Result<Client, CliError> {
    let client = connect(&cluster.app_spec("shop", "shop")).await?;
    client
        .batch_execute("set search_path = public; reset row_security")
        .await
        .map_err(|e| failed("set search_path")(e.to_string()))?;
    Ok(client)
}

async fn fingerprint(client: &Client, table: &str) -> Result<(i64, String), CliError> {
    let row = client
        .query_one(
            &format!("select count(*), coalesce(md5(string_agg(t::text, ',' order by t::text)), '') from {table} t"),
            &[],
        )
        .await
        .map_err(|e| failed("compare tables")(e.to_string()))?;
    Ok((row.get(0), row.get(1)))
}
