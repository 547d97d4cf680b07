//! `beltctl precheck NAME|GROUP`: one report per sync, checked concurrently; exit 1
//! when anything blocks.

use std::process::ExitCode;

use clap::Args;
use futures_util::{stream, StreamExt};

use super::output::print_rows;
use super::setup::resolve_targets;
use super::CliError;
use crate::catalog::Catalog;
use crate::migrate::precheck::{precheck, Finding, Level, Report};
use crate::pg::connect;
use crate::pg::error::render;

/// Arguments of `beltctl precheck`.
#[derive(Debug, Args)]
pub struct PrecheckArgs {
    /// A sync or a group of syncs.
    pub name: String,
    #[arg(long)]
    pub json: bool,
    /// Syncs checked at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
}

async fn check_one(catalog: &Catalog, sync: &str) -> Result<Report, CliError> {
    let def = catalog.require_sync(sync)?;
    let specs = catalog.db_pair(&def)?.specs;
    let tables = catalog.relations(sync)?;
    let mut clients = Vec::new();
    for spec in &specs {
        match connect(spec).await {
            Ok(c) => clients.push(c),
            Err(e) => {
                return Ok(Report {
                    sync: sync.to_string(),
                    findings: vec![Finding {
                        level: Level::Blocker,
                        db: spec.name.clone(),
                        check: "connection".into(),
                        detail: render(&e),
                    }],
                    tables: Vec::new(),
                })
            }
        }
    }
    Ok(precheck(&def, [&specs[0], &specs[1]], [&clients[0], &clients[1]], &tables).await?)
}

/// Prechecks every sync `args.name` stands for.
pub async fn run(catalog: &Catalog, args: PrecheckArgs) -> Result<ExitCode, CliError> {
    let syncs = resolve_targets(catalog, &args.name)?;
    let reports: Vec<Result<Report, CliError>> = stream::iter(syncs.iter().map(|s| check_one(catalog, s)))
        .buffered(args.jobs.max(1))
        .collect()
        .await;
    let reports = reports.into_iter().collect::<Result<Vec<_>, _>>()?;
    let blocked = reports.iter().filter(|r| r.blocked()).count();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("reports serialize")
        );
    } else {
        for r in &reports {
            println!(
                "sync {}: {}",
                r.sync,
                if r.blocked() { "BLOCKED" } else { "ready" }
            );
            print_rows(false, &r.findings, &["", "database", "check", "detail"], |f| {
                let mark = match f.level {
                    Level::Ok => "ok",
                    Level::Warning => "warning",
                    Level::Blocker => "BLOCKER",
                };
                vec![mark.into(), f.db.clone(), f.check.clone(), f.detail.clone()]
            });
            print_rows(
                false,
                &r.tables,
                &["table", "key", "rows (est.)", "size", "generated", "identity"],
                |t| {
                    vec![
                        t.table.clone(),
                        t.key.clone(),
                        t.rows_estimate.to_string(),
                        t.size.clone(),
                        t.generated_columns.join(", "),
                        t.identity_columns.join(", "),
                    ]
                },
            );
        }
    }
    if blocked > 0 {
        eprintln!(
            "precheck: {blocked} of {} sync(s) blocked; fix the BLOCKER lines above",
            reports.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
