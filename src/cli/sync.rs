//! `beltctl add sync`, `list syncs`, `list tables`, `pause`, `resume`, `remove sync`.

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use super::output::print_rows;
use super::CliError;
use crate::catalog::{Catalog, CopyState, Member, SyncDef};
use crate::engine::Strategy;
use crate::migrate::add_sync::{add_sync, update_roles};
use crate::migrate::sync_text::{parse_members, SyncText};
use crate::pg::introspect::TableInfo;

/// Arguments of `beltctl add sync`.
#[derive(Debug, Args)]
pub struct AddSyncArgs {
    /// Name of the sync.
    pub name: String,
    /// Databases and roles: `A:source,B:target`.
    #[arg(long, required = true)]
    pub dbs: String,
    /// `all`, or a comma-separated list of tables (`schema.table` or `table`).
    #[arg(long, default_value = "all")]
    pub tables: String,
    /// Limit `--tables all` to one schema; the default schema of unqualified names.
    #[arg(long)]
    pub schema: Option<String>,
    /// Conflict strategy for syncs with two sources: latest (the later change of a
    /// key wins, ties to the first database), source (the first database wins),
    /// target (the second wins), skip (leave both, record), abort (stop the sync).
    #[arg(long, default_value = "latest", value_parser = Strategy::NAMES)]
    pub conflict: String,
    /// Group (fleet) the sync belongs to.
    #[arg(long)]
    pub group: Option<String>,
    /// Skip the initial copy: the target already holds the source's rows.
    #[arg(long)]
    pub no_copy: bool,
}

/// Checks the sync's databases and tables, then stores it. Changes no database.
pub async fn add(catalog: &mut Catalog, args: AddSyncArgs) -> Result<ExitCode, CliError> {
    let (def, selection) = SyncText {
        name: &args.name,
        dbs: &args.dbs,
        tables: &args.tables,
        schema: args.schema.as_deref(),
        conflict: &args.conflict,
        group: args.group.as_deref(),
        copy: !args.no_copy,
        shard: None,
    }
    .parse()
    .map_err(CliError::Usage)?;
    let tables = add_sync(catalog, &def, &selection).await?;
    report_added(&def, &tables);
    Ok(ExitCode::SUCCESS)
}

/// Says what was added, what to run next, and which tables are not captured.
pub(super) fn report_added(def: &SyncDef, tables: &[TableInfo]) {
    let keyed = tables.iter().filter(|t| t.key.is_some()).count();
    println!(
        "added sync '{}': {}, {keyed} tables replicated",
        def.name,
        describe_members(&def.members)
    );
    if def.copy == CopyState::Added {
        println!(
            "set it up with `beltctl setup {} --wait` (schema, copy, indexes, then replication)",
            def.name
        );
    }
    for t in tables.iter().filter(|t| t.key.is_none()) {
        eprintln!(
            "warning: table {} has no primary key or NOT NULL unique index: it is not captured \
             (add a primary key to replicate it; otherwise it is copied whole at cutover)",
            t.display_name()
        );
    }
}

#[derive(Serialize)]
struct SyncRow {
    name: String,
    dbs: String,
    group: Option<String>,
    paused: bool,
    tables: usize,
}

/// Lists syncs.
pub fn list(catalog: &Catalog, json: bool) -> Result<ExitCode, CliError> {
    let mut rows = Vec::new();
    for s in catalog.syncs()? {
        let dbs = describe_members(&s.members);
        let tables = catalog.relations(&s.name)?.len();
        rows.push(SyncRow {
            name: s.name,
            dbs,
            group: s.group,
            paused: s.paused,
            tables,
        });
    }
    print_rows(json, &rows, &["name", "dbs", "group", "paused", "tables"], |r| {
        vec![
            r.name.clone(),
            r.dbs.clone(),
            r.group.clone().unwrap_or_default(),
            r.paused.to_string(),
            r.tables.to_string(),
        ]
    });
    Ok(ExitCode::SUCCESS)
}

/// Lists a sync's tables with their keys.
pub fn list_tables(catalog: &Catalog, sync: &str, json: bool) -> Result<ExitCode, CliError> {
    catalog.require_sync(sync)?;
    let tables = catalog.relations(sync)?;
    print_rows(json, &tables, &["table", "key", "columns"], |t| {
        let key = match &t.key {
            Some(k) => k.join(", "),
            None => "none (not captured)".into(),
        };
        vec![t.display_name(), key, t.columns.len().to_string()]
    });
    Ok(ExitCode::SUCCESS)
}

/// Pauses or resumes a sync.
pub fn set_paused(catalog: &mut Catalog, name: &str, paused: bool) -> Result<ExitCode, CliError> {
    catalog.set_paused(name, paused)?;
    println!("sync '{name}' {}", if paused { "paused" } else { "resumed" });
    Ok(ExitCode::SUCCESS)
}

/// Removes a sync from the catalog.
pub fn remove(catalog: &mut Catalog, name: &str) -> Result<ExitCode, CliError> {
    catalog.remove_sync(name)?;
    println!("removed sync '{name}'");
    Ok(ExitCode::SUCCESS)
}

pub(super) fn describe_members(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| format!("{}:{}", m.db, m.role.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Arguments of `beltctl update sync`.
#[derive(Debug, Args)]
pub struct UpdateSyncArgs {
    /// The sync.
    pub name: String,
    /// The same databases with new roles, e.g. `src:target,dst:source` to turn the
    /// src → dst direction off. A database that stops being a source stops capturing.
    #[arg(long)]
    pub dbs: String,
}

/// Changes the roles of a sync's databases; the daemon picks it up without a re-copy.
pub async fn update(catalog: &mut Catalog, args: UpdateSyncArgs) -> Result<ExitCode, CliError> {
    let members = parse_members(&args.dbs).map_err(CliError::Usage)?;
    let def = update_roles(catalog, &args.name, members).await?;
    println!("sync '{}' is now {}", def.name, describe_members(&def.members));
    Ok(ExitCode::SUCCESS)
}
