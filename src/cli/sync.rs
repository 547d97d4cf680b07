//! `beltctl add sync`, `list syncs`, `list tables`, `pause`, `resume`, `remove sync`.

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use super::output::print_rows;
use super::CliError;
use crate::catalog::{Catalog, CopyState, Member, Role, SyncDef};
use crate::engine::Strategy;
use crate::migrate::add_sync::{add_sync, check_sync};
use crate::pg::introspect::{TableInfo, TableName};
use crate::tables::Selection;

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

fn parse_members(text: &str) -> Result<Vec<Member>, CliError> {
    let mut members = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (db, role) = part.split_once(':').unwrap_or((part, ""));
        let role = role
            .parse::<Role>()
            .map_err(|_| CliError::Usage(format!("--dbs: '{part}' must be NAME:source or NAME:target")))?;
        if members.iter().any(|m: &Member| m.db == db) {
            return Err(CliError::Usage(format!("--dbs: database '{db}' is listed twice")));
        }
        members.push(Member {
            db: db.to_string(),
            role,
        });
    }
    Ok(members)
}

fn parse_selection(tables: &str, schema: Option<&str>) -> Selection {
    if tables.trim() == "all" {
        return Selection::All {
            schema: schema.map(str::to_string),
        };
    }
    let schema = schema.unwrap_or("public");
    Selection::Listed(
        tables
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| TableName::parse(t, schema))
            .collect(),
    )
}

/// A sync as `beltctl add sync` and plan files describe it — `dbs` as `A:source,B:target`,
/// `tables` as `all` or a list — and the tables it asks for.
pub(super) fn sync_def(
    name: &str,
    dbs: &str,
    tables: &str,
    schema: Option<&str>,
    conflict: &str,
    group: Option<&str>,
    copy: bool,
) -> Result<(SyncDef, Selection), CliError> {
    let def = SyncDef {
        name: name.to_string(),
        members: parse_members(dbs)?,
        conflict: conflict
            .parse()
            .map_err(|e: crate::engine::conflict::BadStrategy| CliError::Usage(e.to_string()))?,
        group: group.map(str::to_string),
        paused: false,
        kick_seq: 0,
        copy: if copy { CopyState::Added } else { CopyState::Done },
        tables_all: (tables.trim() == "all").then(|| schema.unwrap_or_default().to_string()),
    };
    Ok((def, parse_selection(tables, schema)))
}

/// Checks the sync's databases and tables, then stores it. Changes no database.
pub async fn add(catalog: &mut Catalog, args: AddSyncArgs) -> Result<ExitCode, CliError> {
    let (def, selection) = sync_def(
        &args.name,
        &args.dbs,
        &args.tables,
        args.schema.as_deref(),
        &args.conflict,
        args.group.as_deref(),
        !args.no_copy,
    )?;
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

fn describe_members(members: &[Member]) -> String {
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
    let mut def = catalog.require_sync(&args.name)?;
    let members = parse_members(&args.dbs)?;
    let mut old: Vec<&str> = def.members.iter().map(|m| m.db.as_str()).collect();
    let mut new: Vec<&str> = members.iter().map(|m| m.db.as_str()).collect();
    old.sort_unstable();
    new.sort_unstable();
    if old != new {
        return Err(CliError::Usage(format!(
            "--dbs: sync '{}' has databases {}; update changes roles, not databases",
            def.name,
            old.join(", ")
        )));
    }
    def.members = members;
    let tables: Vec<TableName> = catalog
        .relations(&def.name)?
        .into_iter()
        .map(|t| TableName {
            schema: t.schema,
            name: t.name,
        })
        .collect();
    check_sync(catalog, &def, &Selection::Listed(tables)).await?;
    catalog.set_members(&def.name, &def.members)?;
    println!("sync '{}' is now {}", def.name, describe_members(&def.members));
    Ok(ExitCode::SUCCESS)
}
