//! `beltctl demo`: the whole story on two throwaway local clusters — define, start,
//! replicate live writes, prove both sides equal — narrated step by step.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use tokio_postgres::Client;

use super::CliError;
use crate::catalog::{Catalog, Member, Role, SyncDef};
use crate::config::Config;
use crate::local_cluster::LocalCluster;
use crate::pg::connect;
use crate::tables::{self, Selection};

/// Arguments of `beltctl demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the writer keeps writing, in seconds.
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
insert into customers (name, email) select 'customer ' || i, 'c' || i || '@example.com' from generate_series(1, 50) i;
insert into products (name, price) select 'product ' || i, (random() * 100)::numeric(10, 2) + 1 from generate_series(1, 20) i;";

const WRITE: &str = "
with o as (insert into orders (customer_id) values (1 + (random() * 49)::int) returning id)
insert into order_lines (order_id, line_no, product_id, qty)
select o.id, g, 1 + (random() * 19)::int, 1 + (random() * 4)::int
  from o, generate_series(1, 1 + (random() * 2)::int) g;
update products set price = price + 0.01 where id = 1 + (random() * 19)::int;
update orders set status = 'shipped' where id = (select max(id) - 3 from orders);
delete from orders where id = (select min(id) from orders) and random() < 0.3;";

const TABLES: [&str; 4] = ["customers", "products", "orders", "order_lines"];

fn step(n: u32, text: &str) {
    println!("[{n}/6] {text}");
}

fn failed(what: &str) -> impl FnOnce(String) -> CliError + '_ {
    move |e| CliError::Failed(format!("demo: {what}: {e}"))
}

/// Runs the demo; everything it creates is removed when it ends.
pub async fn run(args: DemoArgs) -> Result<ExitCode, CliError> {
    println!("belt demo: a live one-way migration between two throwaway PostgreSQL clusters\n");
    step(1, "starting two clusters from the local PostgreSQL binaries");
    let source = LocalCluster::start().map_err(|e| failed("start source cluster")(e.to_string()))?;
    let target = LocalCluster::start().map_err(|e| failed("start target cluster")(e.to_string()))?;
    println!(
        "      source 127.0.0.1:{}, target 127.0.0.1:{}",
        source.port(),
        target.port()
    );

    step(
        2,
        "creating the shop schema on both (customers, products, orders, order_lines with FKs)",
    );
    for cluster in [&source, &target] {
        let admin = connect(&cluster.db_spec("admin", "postgres")).await?;
        admin
            .batch_execute("create database shop")
            .await
            .map_err(|e| failed("create database")(e.to_string()))?;
        let shop = app_session(cluster).await?;
        shop.batch_execute(SHOP)
            .await
            .map_err(|e| failed("create schema")(e.to_string()))?;
    }

    step(
        3,
        "beltctl add db src …; add db dst …; add sync shop --dbs src:source,dst:target",
    );
    let dir = std::env::temp_dir().join(format!("belt-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| failed("create work directory")(e.to_string()))?;
    let config = Config {
        catalog: dir.join("belt.db"),
        ..Config::default()
    };
    let mut catalog = Catalog::open(&config.catalog)?;
    let (src_spec, dst_spec) = (source.db_spec("src", "shop"), target.db_spec("dst", "shop"));
    catalog.add_db(&src_spec)?;
    catalog.add_db(&dst_spec)?;
    let (src, dst) = (connect(&src_spec).await?, connect(&dst_spec).await?);
    let tables = tables::resolve(
        &src,
        "src",
        &dst,
        "dst",
        &Selection::All {
            schema: Some("public".into()),
        },
        true,
    )
    .await?;
    let def = SyncDef {
        name: "shop".into(),
        members: vec![
            Member {
                db: "src".into(),
                role: Role::Source,
            },
            Member {
                db: "dst".into(),
                role: Role::Target,
            },
        ],
        conflict: "latest".into(),
        group: None,
        paused: false,
        kick_seq: 0,
        copy: "pending".into(),
    };
    catalog.add_sync(&def, &tables)?;
    println!(
        "      {} tables, every one with a key: {}",
        tables.len(),
        TABLES.join(", ")
    );

    step(
        4,
        "starting belt-syncd: it installs capture triggers on the source and replicates",
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(crate::daemon::run_until(config, async {
        let _ = stop_rx.await;
    }));
    wait_state(&catalog, "replicating", Duration::from_secs(30)).await?;

    step(
        5,
        &format!(
            "an application writes to the source for {}s: orders, lines, price changes, deletes",
            args.seconds
        ),
    );
    let writer = app_session(&source).await?;
    writer
        .batch_execute(SEED)
        .await
        .map_err(|e| failed("seed data")(e.to_string()))?;
    let started = Instant::now();
    let mut next_report = Duration::from_secs(1);
    let mut statements = 0u64;
    while started.elapsed() < Duration::from_secs(args.seconds) {
        writer
            .batch_execute(WRITE)
            .await
            .map_err(|e| failed("write")(e.to_string()))?;
        statements += 1;
        if started.elapsed() >= next_report {
            let s = catalog.status("shop")?;
            println!(
                "      t={:>2}s  transactions {statements:>5}  applied rows {:>6}  pending {:>4}  lag {:.2}s",
                next_report.as_secs(),
                s.rows_applied,
                s.pending_rows,
                s.lag_seconds
            );
            next_report += Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    step(
        6,
        "writer stopped; waiting for the last round, then comparing both sides",
    );
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
    let target_app = app_session(&target).await?;
    let mut equal = true;
    for t in TABLES {
        let (a, b) = (fingerprint(&writer, t).await?, fingerprint(&target_app, t).await?);
        let mark = if a == b { "equal" } else { "DIFFERENT" };
        equal &= a == b;
        println!(
            "      {t:<12} {:>6} rows on the source, {:>6} on the target: {mark}",
            a.0, b.0
        );
    }
    let _ = stop_tx.send(());
    let _ = daemon.await;
    let _ = std::fs::remove_dir_all(&dir);
    if !equal {
        return Err(CliError::Failed("demo: the databases differ".into()));
    }
    println!("\ndone: every write reached the target. Clusters and catalog removed.");
    Ok(ExitCode::SUCCESS)
}

async fn app_session(cluster: &LocalCluster) -> Result<Client, CliError> {
    let client = connect(&cluster.db_spec("shop", "shop")).await?;
    client
        .batch_execute("set search_path = public")
        .await
        .map_err(|e| failed("set search_path")(e.to_string()))?;
    Ok(client)
}

async fn wait_state(catalog: &Catalog, state: &str, limit: Duration) -> Result<(), CliError> {
    let deadline = Instant::now() + limit;
    loop {
        let s = catalog.status("shop")?;
        if s.state == state {
            return Ok(());
        }
        if Instant::now() > deadline {
            let error = s.last_error.unwrap_or_default();
            return Err(CliError::Failed(format!(
                "demo: sync is '{}' after {limit:?}: {error}",
                s.state
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
