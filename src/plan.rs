//! Plan files: the databases and syncs of a migration (or of a fleet's shard) declared
//! in YAML, applied as often as you like by `beltctl apply -f FILE` and by
//! `belt-syncd` at start and on SIGHUP (`--plan FILE` or `plan:`). Re-applying an
//! unchanged file changes nothing; an error names the file, line and column.
//!
//! ```yaml
//! databases:
//!   src: { host: 10.0.0.5, port: 5432, dbname: app, user: belt, password_env: SRC_PW }
//!   dst: { url: "postgres://belt@10.0.0.9/app" }      # password from ~/.pgpass
//!   new: { url: "postgres://belt@10.0.0.7/app", password_command: [vault, read, -field=pw, db/new], password_ttl: 300 }
//! groups:
//!   dc1: { shard: 0 }
//! syncs:
//!   app: { dbs: "src:source,dst:target", tables: all, group: dc1, setup: auto }
//!   crm: { dbs: "new:source,dst:target", shard: 1 }
//! ```
//!
//! A sharded daemon (`shard:` in its config) applies only the syncs of its shard and
//! runs only those; every sync then needs a shard, its own or its group's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::catalog::{Catalog, CatalogError, CopyState, SyncDef};
use crate::migrate::add_sync::{add_sync, update_roles};
use crate::migrate::sync_text::{parse_members, SyncText};
use crate::pg::introspect::TableInfo;
use crate::pg::DbSpec;

/// A plan file, parsed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    #[serde(default)]
    databases: BTreeMap<String, DbEntry>,
    #[serde(default)]
    groups: BTreeMap<String, GroupEntry>,
    #[serde(default)]
    syncs: BTreeMap<String, SyncEntry>,
    #[serde(skip)]
    path: PathBuf,
    #[serde(skip)]
    text: String,
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
#[serde(deny_unknown_fields)]
struct GroupEntry {
    shard: Option<u32>,
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

/// When a sync's set-up starts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SetupMode {
    /// At `beltctl setup`.
    #[default]
    Manual,
    /// As soon as the plan is applied: a rebuilt pod needs no operator.
    Auto,
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
    #[serde(default)]
    setup: SetupMode,
    shard: Option<u32>,
}

fn yes() -> bool {
    true
}

/// A plan file that cannot be applied at all; nothing of it was applied.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read plan file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Bad YAML, an unknown key, a bad entry, a sync without a shard while sharded.
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// What applying the plan did to one database or sync.
#[derive(Debug)]
pub enum Outcome {
    Added,
    Unchanged,
    Updated,
    /// A new sync with the tables it replicates.
    SyncAdded {
        def: SyncDef,
        tables: Vec<TableInfo>,
    },
    /// The sync's databases have new roles.
    RolesChanged(SyncDef),
    /// The sync's shard changed (in this catalog).
    Resharded {
        to: Option<u32>,
    },
    /// `setup: auto`: the daemon starts the set-up.
    SetupRequested,
    /// The sync belongs to another shard; this daemon neither adds nor runs it.
    OtherShard(u32),
    /// Applying it failed; the rest of the plan went on.
    Failed(String),
}

/// One line of what applying did: `db src: added`, `sync app: setup requested`.
#[derive(Debug)]
pub struct Applied {
    pub kind: &'static str,
    pub name: String,
    pub outcome: Outcome,
}

impl Plan {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut plan: Plan = serde_yaml::from_str(&text).map_err(|e| PlanError::Invalid {
            at: format!(
                "{}{}",
                path.display(),
                e.location()
                    .map(|l| format!(":{}:{}", l.line(), l.column()))
                    .unwrap_or_default()
            ),
            message: e.to_string(),
        })?;
        plan.path = path.to_path_buf();
        plan.text = text;
        Ok(plan)
    }

    /// An error about entry `key`, at the line that starts it.
    fn invalid(&self, key: &str, message: String) -> PlanError {
        PlanError::Invalid {
            at: locate(&self.path, &self.text, key),
            message,
        }
    }

    /// The shard that runs sync `name`: its own, else its group's.
    fn shard_of(&self, entry: &SyncEntry) -> Option<u32> {
        entry.shard.or_else(|| {
            let group = entry.group.as_ref()?;
            self.groups.get(group)?.shard
        })
    }

    /// Checks every entry before anything is applied: database settings, sync text,
    /// and with sharding on (`shard`), that every sync has a shard.
    pub fn check(&self, shard: Option<u32>) -> Result<Vec<DbSpec>, PlanError> {
        let mut specs = Vec::new();
        for (name, entry) in &self.databases {
            specs.push(db_spec(name, entry).map_err(|m| self.invalid(name, m))?);
        }
        for (name, entry) in &self.syncs {
            if shard.is_some() && self.shard_of(entry).is_none() {
                return Err(self.invalid(
                    name,
                    format!(
                        "sync '{name}' has no shard, and this daemon is sharded: give it `shard: N` or put it in a group that has one"
                    ),
                ));
            }
            self.sync_text(name, entry)
                .parse()
                .map_err(|m| self.invalid(name, m))?;
        }
        Ok(specs)
    }

    fn sync_text<'a>(&'a self, name: &'a str, entry: &'a SyncEntry) -> SyncTextOwned<'a> {
        SyncTextOwned {
            name,
            dbs: entry.dbs.joined(),
            tables: entry
                .tables
                .as_ref()
                .map_or_else(|| "all".into(), OneOrMany::joined),
            entry,
            shard: self.shard_of(entry),
        }
    }

    /// Applies the plan to `catalog`: adds what is new, updates what changed, leaves
    /// the rest. With `shard`, only the syncs of that shard are added; a sync moved
    /// to another shard gets its new shard here (and the daemon stops running it).
    /// A sync that fails (its database unreachable, say) is reported and the others
    /// go on.
    pub async fn apply(&self, catalog: &mut Catalog, shard: Option<u32>) -> Result<Vec<Applied>, PlanError> {
        let specs = self.check(shard)?;
        let mut done = Vec::new();
        for spec in specs {
            let outcome = match catalog.db(&spec.name)? {
                None => {
                    catalog.add_db(&spec)?;
                    Outcome::Added
                }
                Some(old) if old == spec => Outcome::Unchanged,
                Some(_) => {
                    catalog.update_db(&spec)?;
                    Outcome::Updated
                }
            };
            done.push(Applied {
                kind: "db",
                name: spec.name,
                outcome,
            });
        }
        for (name, entry) in &self.syncs {
            let mut outcomes = Vec::new();
            if let Err(message) = self.apply_sync(catalog, name, entry, shard, &mut outcomes).await {
                outcomes.push(Outcome::Failed(format!(
                    "{}: {message}",
                    locate(&self.path, &self.text, name)
                )));
            }
            done.extend(outcomes.into_iter().map(|outcome| Applied {
                kind: "sync",
                name: name.clone(),
                outcome,
            }));
        }
        Ok(done)
    }

    async fn apply_sync(
        &self,
        catalog: &mut Catalog,
        name: &str,
        entry: &SyncEntry,
        shard: Option<u32>,
        outcomes: &mut Vec<Outcome>,
    ) -> Result<(), String> {
        let text = self.sync_text(name, entry);
        let render = |e: &(dyn std::error::Error + 'static)| crate::pg::error::render(e);
        let Some(old) = catalog.sync(name).map_err(|e| render(&e))? else {
            if let (Some(mine), Some(theirs)) = (shard, text.shard) {
                if mine != theirs {
                    outcomes.push(Outcome::OtherShard(theirs));
                    return Ok(());
                }
            }
            let (def, selection) = text.parse()?;
            let tables = add_sync(catalog, &def, &selection)
                .await
                .map_err(|e| render(&e))?;
            outcomes.push(Outcome::SyncAdded { def, tables });
            return self.request_setup(catalog, name, entry, outcomes);
        };
        if old.shard != text.shard {
            catalog.set_shard(name, text.shard).map_err(|e| render(&e))?;
            outcomes.push(Outcome::Resharded { to: text.shard });
        }
        if let (Some(mine), Some(theirs)) = (shard, text.shard) {
            if mine != theirs {
                outcomes.push(Outcome::OtherShard(theirs));
                return Ok(());
            }
        }
        let members = parse_members(&text.dbs)?;
        if old.members != members {
            let def = update_roles(catalog, name, members)
                .await
                .map_err(|e| render(&e))?;
            outcomes.push(Outcome::RolesChanged(def));
        }
        self.request_setup(catalog, name, entry, outcomes)?;
        if outcomes.is_empty() {
            outcomes.push(Outcome::Unchanged);
        }
        Ok(())
    }

    fn request_setup(
        &self,
        catalog: &mut Catalog,
        name: &str,
        entry: &SyncEntry,
        outcomes: &mut Vec<Outcome>,
    ) -> Result<(), String> {
        let added = catalog.sync(name).ok().flatten().map(|s| s.copy) == Some(CopyState::Added);
        if entry.setup == SetupMode::Auto && added {
            catalog
                .request_setup(name)
                .map_err(|e| crate::pg::error::render(&e))?;
            outcomes.push(Outcome::SetupRequested);
        }
        Ok(())
    }
}

/// A sync entry's text with its defaults filled in.
struct SyncTextOwned<'a> {
    name: &'a str,
    dbs: String,
    tables: String,
    entry: &'a SyncEntry,
    shard: Option<u32>,
}

impl SyncTextOwned<'_> {
    fn parse(&self) -> Result<(SyncDef, crate::tables::Selection), String> {
        SyncText {
            name: self.name,
            dbs: &self.dbs,
            tables: &self.tables,
            schema: self.entry.schema.as_deref(),
            conflict: self.entry.conflict.as_deref().unwrap_or("latest"),
            group: self.entry.group.as_deref(),
            copy: self.entry.copy,
            shard: self.shard,
        }
        .parse()
    }
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

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Added | Outcome::SyncAdded { .. } => f.write_str("added"),
            Outcome::Unchanged => f.write_str("unchanged"),
            Outcome::Updated => f.write_str("updated"),
            Outcome::RolesChanged(_) => f.write_str("roles changed"),
            Outcome::Resharded { to: Some(s) } => write!(f, "moved to shard {s}"),
            Outcome::Resharded { to: None } => f.write_str("no longer in a shard"),
            Outcome::SetupRequested => f.write_str("set-up requested (setup: auto)"),
            Outcome::OtherShard(s) => write!(f, "belongs to shard {s}: not run here"),
            Outcome::Failed(message) => write!(f, "failed: {message}"),
        }
    }
}
