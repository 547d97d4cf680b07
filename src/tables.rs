//! Which tables a sync replicates, checked on both databases before anything runs.
//!
//! An operator learns about a missing table, a table without a key or a column that
//! differs when the sync is added, not hours later from the daemon's log. The daemon
//! runs the same check when it starts a sync, against the live databases.

use tokio_postgres::Client;

use crate::pg::introspect::{describe_table, list_tables, TableInfo, TableName};
use crate::pg::DbError;

/// A table selection that cannot be replicated as asked.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("table {table} not found in database '{db}'; check the name (schema.table) with \\dt in psql")]
    Unknown { db: String, table: String },
    #[error("table {table} exists in '{src}' but not in '{dst}'; let belt copy the schema into an empty target database (no --no-copy), or create it on the target first (pg_dump --schema-only -d SOURCE | psql -d TARGET)")]
    MissingOnTarget { src: String, dst: String, table: String },
    #[error("table {table} differs between '{src}' and '{dst}': {differences}; make the target's columns match the source's")]
    Mismatch {
        src: String,
        dst: String,
        table: String,
        differences: String,
    },
    #[error("no tables to replicate in '{db}'{scope}")]
    Empty { db: String, scope: String },
}

/// What the operator asked for: every table (of one schema, maybe) or a list.
#[derive(Debug, Clone)]
pub enum Selection {
    All { schema: Option<String> },
    Listed(Vec<TableName>),
}

/// Resolves `selection` on the source and checks each table against the target.
/// Tables without a key are returned with `key: None`: reported, not captured.
///
/// With `schema_copy`, a target database without any table is accepted: the daemon
/// copies the source's schema there first.
pub async fn resolve(
    src: &Client,
    src_db: &str,
    dst: &Client,
    dst_db: &str,
    selection: &Selection,
    schema_copy: bool,
) -> Result<Vec<TableInfo>, TableError> {
    let names = match selection {
        Selection::All { schema } => list_tables(src, src_db, schema.as_deref()).await?,
        Selection::Listed(names) => names.clone(),
    };
    if names.is_empty() {
        let scope = match selection {
            Selection::All { schema: Some(s) } => format!(" (schema {s})"),
            _ => String::new(),
        };
        return Err(TableError::Empty {
            db: src_db.to_string(),
            scope,
        });
    }
    let mut tables = Vec::new();
    let mut missing = Vec::new();
    for name in &names {
        let display = format!("{}.{}", name.schema, name.name);
        let Some(table) = describe_table(src, src_db, name).await? else {
            return Err(TableError::Unknown {
                db: src_db.to_string(),
                table: display,
            });
        };
        let Some(target) = describe_table(dst, dst_db, name).await? else {
            missing.push(display);
            tables.push(table);
            continue;
        };
        let differences = column_differences(&table, &target);
        if !differences.is_empty() {
            return Err(TableError::Mismatch {
                src: src_db.to_string(),
                dst: dst_db.to_string(),
                table: display,
                differences: differences.join("; "),
            });
        }
        tables.push(table);
    }
    if let Some(first) = missing.first() {
        if !schema_copy || !list_tables(dst, dst_db, None).await?.is_empty() {
            return Err(TableError::MissingOnTarget {
                src: src_db.to_string(),
                dst: dst_db.to_string(),
                table: first.clone(),
            });
        }
    }
    Ok(tables)
}

/// What differs between two descriptions of one table, in words.
pub fn column_differences(src: &TableInfo, dst: &TableInfo) -> Vec<String> {
    let mut out = Vec::new();
    for c in src.columns.iter().filter(|c| !c.generated) {
        match dst.columns.iter().find(|d| d.name == c.name) {
            None => out.push(format!("column {} is missing on the target", c.name)),
            Some(d) if d.type_name != c.type_name => out.push(format!(
                "column {} is {} on the source and {} on the target",
                c.name, c.type_name, d.type_name
            )),
            Some(_) => {}
        }
    }
    for d in &dst.columns {
        if !src.columns.iter().any(|c| c.name == d.name) {
            out.push(format!("column {} exists only on the target", d.name));
        }
    }
    out
}
