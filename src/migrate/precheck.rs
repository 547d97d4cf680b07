//! `beltctl precheck`: everything a migration needs, checked on both databases before
//! anything is written, with what belt will do about each finding.

use serde::Serialize;
use tokio_postgres::Client;

use super::privileges;
use super::roles::{missing, not_member_of, used_roles};
use crate::catalog::{Role, SyncDef};
use crate::engine::echo::{check_receiver, PRIVILEGE_HINT};
use crate::pg::binaries::find_program;
use crate::pg::introspect::TableInfo;
use crate::pg::{DbError, DbSpec};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Blocker,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub level: Level,
    pub db: String,
    pub check: String,
    pub detail: String,
}

/// One table as the migration will treat it.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub table: String,
    /// `primary key (id)`, `unique index x (a, b)` or `none: copied whole at cutover`.
    pub key: String,
    pub rows_estimate: i64,
    pub size: String,
    pub generated_columns: Vec<String>,
    pub identity_columns: Vec<String>,
}

/// The whole precheck of one sync.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub sync: String,
    pub findings: Vec<Finding>,
    pub tables: Vec<TableReport>,
}

impl Report {
    /// Whether anything blocks the migration.
    pub fn blocked(&self) -> bool {
        self.findings.iter().any(|f| f.level == Level::Blocker)
    }

    /// Adds one finding.
    pub(crate) fn add(&mut self, level: Level, db: &str, check: &str, detail: impl Into<String>) {
        self.findings.push(Finding {
            level,
            db: db.into(),
            check: check.into(),
            detail: detail.into(),
        });
    }
}

async fn one<T: tokio_postgres::types::FromSqlOwned>(c: &Client, db: &str, sql: &str) -> Result<T, DbError> {
    Ok(c.query_one(sql, &[])
        .await
        .map_err(|e| DbError::query(db, "precheck", e))?
        .get(0))
}

/// Checks a sync's two databases. `clients` and `specs` are in the sync's order.
pub async fn precheck(
    def: &SyncDef,
    specs: [&DbSpec; 2],
    clients: [&Client; 2],
    tables: &[TableInfo],
) -> Result<Report, DbError> {
    let mut report = Report {
        sync: def.name.clone(),
        findings: Vec::new(),
        tables: Vec::new(),
    };
    let roles = [def.members[0].role, def.members[1].role];
    let mut versions = [0i32; 2];
    for i in 0..2 {
        let (c, db) = (clients[i], specs[i].name.as_str());
        let num: String = one(c, db, "select current_setting('server_version_num')").await?;
        versions[i] = num.parse::<i32>().unwrap_or(0) / 10000;
        let level = if versions[i] >= 10 {
            Level::Ok
        } else {
            Level::Blocker
        };
        report.add(
            level,
            db,
            "server version",
            format!("PostgreSQL {} (belt needs 10 or later)", versions[i]),
        );
        {
            let create: bool = one(
                c,
                db,
                "select has_database_privilege(current_database(), 'CREATE')",
            )
            .await?;
            let (level, detail) = if create {
                let what = if roles[i] == Role::Source {
                    "may create schema belt and its triggers"
                } else {
                    "may create schema belt (the sync's copy mark; triggers once it becomes a source)"
                };
                (Level::Ok, what.to_string())
            } else {
                let grant: String = one(
                    c,
                    db,
                    "select format('GRANT CREATE ON DATABASE %I TO %I', current_database(), current_user)",
                )
                .await?;
                (
                    Level::Blocker,
                    format!("the role may not create schema belt: {grant}"),
                )
            };
            report.add(level, db, "capture privileges", detail);
        }
        if roles[1 - i] == Role::Source {
            super::always::check(&mut report, db, c, tables).await?;
            match check_receiver(c, db).await {
                Ok(()) => report.add(
                    Level::Ok,
                    db,
                    "apply without echo",
                    "may set session_replication_role",
                ),
                Err(_) => {
                    let me: String = one(c, db, "select quote_ident(current_user)").await?;
                    report.add(
                        Level::Blocker,
                        db,
                        "apply without echo",
                        PRIVILEGE_HINT.replace("<role>", &me),
                    )
                }
            }
        }
        privileges::check(&mut report, db, c, tables, versions[i]).await?;
    }
    let src = crate::catalog::first_source(roles.map(|r| r == Role::Source));
    let dst = 1 - src;
    if versions[dst] < versions[src] {
        report.add(
            Level::Warning,
            &specs[dst].name,
            "server version",
            format!(
                "older than the source ({} < {}): replication works, the schema copy may not",
                versions[dst], versions[src]
            ),
        );
    }
    let copies_schema = check_target_schema(&mut report, specs, clients, src, versions[src]).await?;
    check_roles(&mut report, specs, clients, src, copies_schema).await?;
    check_objects(&mut report, specs[src], clients[src]).await?;
    for t in tables {
        report
            .tables
            .push(table_report(clients[src], &specs[src].name, t).await?);
        if t.key.is_none() {
            report.add(
                Level::Warning,
                &specs[src].name,
                "table without key",
                format!("{}: no primary key or NOT NULL unique index; copied whole at setup and cutover, not replicated", t.display_name()),
            );
        }
    }
    Ok(report)
}

/// The target must know every role the source's schema uses (DESIGN.md rule 10); when
/// belt copies the schema, its role there must be able to give objects their owners.
async fn check_roles(
    report: &mut Report,
    specs: [&DbSpec; 2],
    clients: [&Client; 2],
    src: usize,
    copies_schema: bool,
) -> Result<(), DbError> {
    let dst = 1 - src;
    let (dc, ddb) = (clients[dst], specs[dst].name.as_str());
    let used = used_roles(clients[src], &specs[src].name).await?;
    let missing = missing(dc, ddb, &used).await?;
    if missing.is_empty() {
        report.add(
            Level::Ok,
            ddb,
            "roles",
            format!("all {} roles the source's schema uses exist here", used.len()),
        );
    }
    for role in &missing {
        report.add(
            Level::Blocker,
            ddb,
            "roles",
            format!(
                "role {} is used on '{}' ({}) and does not exist here: {}",
                role.name,
                specs[src].name,
                role.describe_uses(),
                role.create_statement()
            ),
        );
    }
    if !copies_schema {
        return Ok(());
    }
    let owners: Vec<&str> = used.iter().filter(|r| r.owns).map(|r| r.name.as_str()).collect();
    let me: String = one(dc, ddb, "select quote_ident(current_user)").await?;
    for owner in not_member_of(dc, ddb, &owners).await? {
        report.add(
            Level::Blocker,
            ddb,
            "schema owners",
            format!(
                "the schema copy makes {owner} the owner of its objects, which needs membership: GRANT {owner} TO {me}"
            ),
        );
    }
    Ok(())
}

/// An empty target gets the schema by pg_dump: it must exist, be new enough, and the
/// target must offer the source's extensions. Returns whether belt copies the schema.
async fn check_target_schema(
    report: &mut Report,
    specs: [&DbSpec; 2],
    clients: [&Client; 2],
    src: usize,
    src_major: i32,
) -> Result<bool, DbError> {
    let dst = 1 - src;
    let (dc, ddb) = (clients[dst], specs[dst].name.as_str());
    let target_tables: i64 = one(
        dc,
        ddb,
        "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema', 'belt') \
         and n.nspname not like 'pg\\_%'",
    )
    .await?;
    if target_tables > 0 {
        report.add(
            Level::Ok,
            ddb,
            "schema",
            format!("{target_tables} tables present: used as they are when they match"),
        );
        return Ok(false);
    }
    report.add(
        Level::Ok,
        ddb,
        "schema",
        "no tables: belt copies the source's schema",
    );
    match find_program("pg_dump").map(|p| pg_dump_major(&p)) {
        None => report.add(Level::Blocker, &specs[src].name, "pg_dump", "not found: apt-get install -y postgresql-client or set BELT_PG_BIN"),
        Some(Some(v)) if v < src_major => report.add(
            Level::Blocker,
            &specs[src].name,
            "pg_dump",
            format!("pg_dump {v} cannot dump a PostgreSQL {src_major} server: install postgresql-client-{src_major}"),
        ),
        Some(v) => report.add(Level::Ok, &specs[src].name, "pg_dump", format!("version {}", v.unwrap_or(0))),
    }
    let missing: Vec<String> = clients[src]
        .query(
            "select extname from pg_extension where extname <> 'plpgsql' order by 1",
            &[],
        )
        .await
        .map_err(|e| DbError::query(&specs[src].name, "list extensions", e))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    for ext in missing {
        let available: bool = dc
            .query_one(
                "select exists (select 1 from pg_available_extensions where name = $1)",
                &[&ext],
            )
            .await
            .map_err(|e| DbError::query(ddb, "list extensions", e))?
            .get(0);
        if !available {
            report.add(
                Level::Blocker,
                ddb,
                "extension",
                format!("{ext} is used on the source and not installable here"),
            );
        }
    }
    Ok(true)
}

fn pg_dump_major(program: &std::path::Path) -> Option<i32> {
    let out = std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.split('.').next()?.parse().ok())
}

/// Objects triggers cannot capture.
async fn check_objects(report: &mut Report, spec: &DbSpec, c: &Client) -> Result<(), DbError> {
    let db = spec.name.as_str();
    let lobs: i64 = one(c, db, "select count(*) from pg_largeobject_metadata").await?;
    if lobs > 0 {
        report.add(
            Level::Warning,
            db,
            "large objects",
            format!(
                "{lobs} large objects are not replicated: move them with pg_dump --large-objects at cutover"
            ),
        );
    }
    let unlogged: i64 = one(
        c,
        db,
        "select count(*) from pg_class where relpersistence = 'u' and relkind = 'r'",
    )
    .await?;
    if unlogged > 0 {
        report.add(Level::Warning, db, "unlogged tables", format!("{unlogged} unlogged tables: replicated like the others, but their contents vanish on a crash of either server"));
    }
    let seqs: i64 = one(c, db, "select count(*) from pg_class where relkind = 'S'").await?;
    report.add(
        Level::Ok,
        db,
        "sequences",
        format!("{seqs} sequences: carried forward to the target every round"),
    );
    Ok(())
}

async fn table_report(c: &Client, db: &str, t: &TableInfo) -> Result<TableReport, DbError> {
    let row = c
        .query_one(
            "select greatest(c.reltuples, 0)::int8, pg_size_pretty(pg_total_relation_size(c.oid)), \
             (select i.indisprimary from pg_index i where i.indrelid = c.oid and i.indisprimary limit 1), \
             (select ic.relname::text from pg_index i join pg_class ic on ic.oid = i.indexrelid \
               where i.indrelid = c.oid and i.indisunique and not i.indisprimary limit 1) \
             from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = $2",
            &[&t.schema, &t.name],
        )
        .await
        .map_err(|e| DbError::query(db, format!("describe {}", t.display_name()), e))?;
    let key = match (&t.key, row.get::<_, Option<bool>>(2)) {
        (Some(k), Some(true)) => format!("primary key ({})", k.join(", ")),
        (Some(k), _) => format!(
            "unique index {} ({})",
            row.get::<_, Option<String>>(3).unwrap_or_default(),
            k.join(", ")
        ),
        (None, _) => "none: copied whole at setup and cutover".into(),
    };
    let cols = |f: fn(&crate::pg::introspect::ColumnInfo) -> bool| {
        t.columns
            .iter()
            .filter(|c| f(c))
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };
    Ok(TableReport {
        table: t.display_name(),
        key,
        rows_estimate: row.get(0),
        size: row.get(1),
        generated_columns: cols(|c| c.generated),
        identity_columns: cols(|c| c.identity),
    })
}
