//! `beltctl add sync`, `list syncs`, `list tables`, `pause`, `resume`, `remove sync`.

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use super::output::print_rows;
use super::CliError;
use crate::catalog::{Catalog, Member, Role, SyncDef};
use crate::pg::connect;
use crate::pg::introspect::TableName;
use crate::tables::{self, Selection};

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
    /// Conflict strategy for syncs with two sources.
    #[arg(long, default_value = "latest", value_parser = ["latest", "source", "target", "skip", "abort"])]
    pub conflict: String,
    /// Group (fleet) the sync belongs to.
    #[arg(long)]
    pub group: Option<String>,
}

fn parse_members(text: &str) -> Result<Vec<Member>, CliError> {
    let mut members = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (db, role) = part.split_once(':').unwrap_or((part, ""));
        let role = Role::parse(role)
            .ok_or_else(|| CliError::Usage(format!("--dbs: '{part}' must be NAME:source or NAME:target")))?;
        if members.iter().any(|m: &Member| m.db == db) {
            return Err(CliError::Usage(format!("--dbs: database '{db}' is listed twice")));
        }
        members.push(Member {
            db: db.to_string(),
            role,
        });
    }
    let sources = members.iter().filter(|m| m.role == Role::Source).count();
    let targets = members.len() - sources;
    if sources != 1 || targets != 1 {
        return Err(CliError::Usage(
            "--dbs: this version replicates one way: give one source and one target (A:source,B:target)"
                .into(),
        ));
    }
    Ok(members)
}

fn parse_selection(args: &AddSyncArgs) -> Selection {
    if args.tables.trim() == "all" {
        return Selection::All {
            schema: args.schema.clone(),
        };
    }
    let schema = args.schema.as_deref().unwrap_or("public");
    Selection::Listed(
        args.tables
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| TableName::parse(t, schema))
            .collect(),
    )
}

/// Checks the sync's databases and tables, then stores it. Changes no database.
pub async fn add(catalog: &mut Catalog, args: AddSyncArgs) -> Result<ExitCode, CliError> {
    let members = parse_members(&args.dbs)?;
    if catalog.sync(&args.name)?.is_some() {
        return Err(crate::catalog::CatalogError::Exists {
            kind: "sync",
            name: args.name.clone(),
        }
        .into());
    }
    let def = SyncDef {
        name: args.name.clone(),
        members,
        conflict: args.conflict.clone(),
        group: args.group.clone(),
        paused: false,
        kick_seq: 0,
    };
    let (src_name, dst_name) = def.one_way().expect("validated members");
    let src_spec = catalog.require_db(src_name)?;
    let dst_spec = catalog.require_db(dst_name)?;
    let src = connect(&src_spec).await?;
    let dst = connect(&dst_spec).await?;
    let tables = tables::resolve(&src, src_name, &dst, dst_name, &parse_selection(&args)).await?;
    catalog.add_sync(&def, &tables)?;
    let keyed = tables.iter().filter(|t| t.key.is_some()).count();
    println!(
        "added sync '{}': {src_name} → {dst_name}, {keyed} tables replicated",
        def.name
    );
    for t in tables.iter().filter(|t| t.key.is_none()) {
        eprintln!(
            "warning: table {} has no primary key or NOT NULL unique index: it is not captured \
             (add a primary key to replicate it; otherwise it is copied whole at cutover)",
            t.display_name()
        );
    }
    Ok(ExitCode::SUCCESS)
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
        let dbs = s
            .members
            .iter()
            .map(|m| format!("{}:{}", m.db, m.role.as_str()))
            .collect::<Vec<_>>()
            .join(",");
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
