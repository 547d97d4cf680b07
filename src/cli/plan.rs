//! `beltctl apply -f FILE.yaml`: declare databases and syncs in a file, apply it as
//! often as you like. Re-applying an unchanged file changes nothing; an error names
//! the file, line and column.
//!
//! ```yaml
//! databases:
//!   src: { host: 10.0.0.5, port: 5432, dbname: app, user: belt, password_env: SRC_PW }
//!   dst: { url: "postgres://belt@10.0.0.9/app" }      # password from ~/.pgpass
//!   new: { url: "postgres://belt@10.0.0.7/app", password_command: [vault, read, -field=pw, db/new], password_ttl: 300 }
//! syncs:
//!   app: { dbs: "src:source,dst:target", tables: all, group: dc1 }
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use serde::Deserialize;

use super::sync::{self, UpdateSyncArgs};
use super::CliError;
use crate::catalog::Catalog;
use crate::migrate::add_sync::add_sync;
use crate::pg::DbSpec;

/// Arguments of `beltctl apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The plan file (YAML).
    #[arg(short, long)]
    pub file: std::path::PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    #[serde(default)]
    databases: BTreeMap<String, DbEntry>,
    #[serde(default)]
    syncs: BTreeMap<String, SyncEntry>,
}

/// A database: a URI or libpq keys, and where its password comes from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DbEntry {
    url: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    dbname: Option<String>,
    user: Option<String>,
    sslmode: Option<String>,
    connect_timeout: Option<u64>,
    application_name: Option<String>,
    password_env: Option<String>,
    password_file: Option<String>,
    /// A program and its arguments (a list, or one string split on spaces).
    password_command: Option<OneOrMany>,
    /// Seconds `password_command`'s output is used before it runs again.
    password_ttl: Option<u64>,
    /// Refused: secrets never go in a plan file or the catalog.
    password: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn joined(&self) -> String {
        match self {
            OneOrMany::One(s) => s.clone(),
            OneOrMany::Many(v) => v.join(","),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncEntry {
    dbs: OneOrMany,
    tables: Option<OneOrMany>,
    schema: Option<String>,
    conflict: Option<String>,
    group: Option<String>,
    #[serde(default = "yes")]
    copy: bool,
}

fn yes() -> bool {
    true
}

/// `file:line:column` of the first line that starts a mapping key `key:` (for errors
/// found after parsing, which serde_yaml gives no position for).
fn locate(path: &Path, text: &str, key: &str) -> String {
    let needle = format!("{key}:");
    for (i, line) in text.lines().enumerate() {
        if let Some(col) = line.find(&needle) {
            if line[..col].trim().is_empty() || line[..col].trim_end().ends_with(['{', ',']) {
                return format!("{}:{}:{}", path.display(), i + 1, col + 1);
            }
        }
    }
    path.display().to_string()
}

fn db_spec(name: &str, e: &DbEntry) -> Result<DbSpec, String> {
    if e.password.is_some() {
        return Err(format!("database '{name}': password may not be written in a plan file; use password_env, password_file, password_command or ~/.pgpass"));
    }
    let mut args = Vec::new();
    if let Some(url) = &e.url {
        args.push(url.clone());
    }
    let keys = [
        ("host", e.host.clone()),
        ("port", e.port.map(|p| p.to_string())),
        ("dbname", e.dbname.clone()),
        ("user", e.user.clone()),
        ("sslmode", e.sslmode.clone()),
        ("connect_timeout", e.connect_timeout.map(|t| t.to_string())),
        ("application_name", e.application_name.clone()),
        ("password_env", e.password_env.clone()),
        ("password_file", e.password_file.clone()),
    ];
    args.extend(keys.into_iter().filter_map(|(k, v)| Some(format!("{k}={}", v?))));
    let mut spec = DbSpec::parse(name, &args).map_err(|e| e.to_string())?;
    spec.password_command = e.password_command.as_ref().map(|c| match c {
        OneOrMany::One(s) => s.split_whitespace().map(String::from).collect(),
        OneOrMany::Many(v) => v.clone(),
    });
    spec.password_ttl = e.password_ttl.map(std::time::Duration::from_secs);
    spec.check_password_source().map_err(|e| e.to_string())?;
    Ok(spec)
}

/// Applies a plan file: adds what is new, updates what changed, leaves the rest.
pub async fn apply(catalog: &mut Catalog, args: ApplyArgs) -> Result<ExitCode, CliError> {
    let path = args.file.as_path();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read plan file {}: {e}", path.display())))?;
    let plan: Plan = serde_yaml::from_str(&text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        CliError::Usage(format!("{}{at}: {e}", path.display()))
    })?;
    let at = |key: &str, msg: String| CliError::Usage(format!("{}: {msg}", locate(path, &text, key)));
    for (name, entry) in &plan.databases {
        let spec = db_spec(name, entry).map_err(|m| at(name, m))?;
        match catalog.db(name)? {
            None => {
                catalog.add_db(&spec)?;
                println!("db {name}: added");
            }
            Some(old) if old == spec => println!("db {name}: unchanged"),
            Some(_) => {
                catalog.update_db(&spec)?;
                println!("db {name}: updated");
            }
        }
    }
    for (name, entry) in &plan.syncs {
        let dbs = entry.dbs.joined();
        let Some(old) = catalog.sync(name)? else {
            let tables = entry
                .tables
                .as_ref()
                .map_or_else(|| "all".into(), OneOrMany::joined);
            let conflict = entry.conflict.as_deref().unwrap_or("latest");
            let (def, selection) = sync::sync_def(
                name,
                &dbs,
                &tables,
                entry.schema.as_deref(),
                conflict,
                entry.group.as_deref(),
                entry.copy,
            )
            .map_err(|e| at(name, crate::pg::error::render(&e)))?;
            let tables = add_sync(catalog, &def, &selection)
                .await
                .map_err(|e| at(name, crate::pg::error::render(&e)))?;
            sync::report_added(&def, &tables);
            continue;
        };
        let old_dbs = old
            .members
            .iter()
            .map(|m| format!("{}:{}", m.db, m.role.as_str()))
            .collect::<Vec<_>>();
        let new_dbs: Vec<String> = dbs.split(',').map(|s| s.trim().to_string()).collect();
        if old_dbs == new_dbs {
            println!("sync {name}: unchanged");
        } else {
            sync::update(
                catalog,
                UpdateSyncArgs {
                    name: name.clone(),
                    dbs,
                },
            )
            .await
            .map_err(|e| at(name, crate::pg::error::render(&e)))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
