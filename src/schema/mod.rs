//! Schema copy: pgbelt's and Bucardo's users run `pg_dump --schema-only | psql` by
//! hand and read past its errors; belt applies the source's schema itself, to a
//! target database without tables, and stops at the first failing statement, naming
//! it. A target that already has the tables is used as it is when they match.
//!
//! Before the copy, in one transaction (all or nothing): types, functions, tables,
//! sequences, defaults, primary keys and unique constraints — apply and copy work by
//! key. After the copy: indexes, triggers and foreign keys. Foreign keys are created
//! `NOT VALID`: rows arrive table by table and chunk by chunk, so a moment's mismatch
//! between two tables must not fail the setup; they are enforced for the application
//! from then on and can be validated once the databases are in step (at cutover).

pub mod dump;

use tokio_postgres::Client;

use crate::pg::introspect::{list_tables, TableName};
use crate::pg::{DbError, DbSpec};
use dump::{dump_schema, Entry};

/// A schema copy that failed.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("pg_dump not found: install the PostgreSQL client of the source's major version (Debian: apt-get install -y postgresql-client) or set BELT_PG_BIN")]
    NoPgDump,
    #[error("pg_dump of database '{db}' failed: {message}")]
    Dump { db: String, message: String },
    #[error("schema copy to database '{db}' stopped at {kind} {name}: {statement}")]
    Apply {
        db: String,
        kind: String,
        name: String,
        statement: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database '{db}' has some of the sync's tables ({present}) but not others ({missing}); create the missing ones by hand or drop the present ones, then set the sync up again")]
    Partial {
        db: String,
        present: String,
        missing: String,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl SchemaError {
    /// Whether trying again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SchemaError::Db(e) if e.is_transient())
    }
}

/// Whether the target database has no user tables at all: only then does belt copy
/// the source's schema there (the dump is the whole database's schema; into a
/// database that has tables of its own it would collide).
pub async fn target_is_empty(dst: &Client, db: &str) -> Result<bool, SchemaError> {
    Ok(list_tables(dst, db, None).await?.is_empty())
}

async fn read_dump(src: &DbSpec, only: Option<&TableName>) -> Result<dump::Dump, SchemaError> {
    let env = crate::pg::connect::child_env(src).await?;
    let (spec, only) = (src.clone(), only.cloned());
    tokio::task::spawn_blocking(move || dump_schema(&spec, &env, only.as_ref()))
        .await
        .map_err(|e| SchemaError::Dump {
            db: src.name.clone(),
            message: e.to_string(),
        })?
}

fn apply_error(db: &str, e: &Entry, source: tokio_postgres::Error) -> SchemaError {
    SchemaError::Apply {
        db: db.to_string(),
        kind: e.kind.clone(),
        name: e.name.clone(),
        statement: e.sql.clone(),
        source,
    }
}

/// Creates the source's schema on the target, but for what is built after the copy.
/// Returns how many objects it created.
pub async fn copy_before(src: &DbSpec, dst: &mut Client, dst_db: &str) -> Result<usize, SchemaError> {
    let dump = read_dump(src, None).await?;
    let tx = dst
        .transaction()
        .await
        .map_err(|e| DbError::query(dst_db, "begin schema copy", e))?;
    tx.batch_execute(&dump.preamble)
        .await
        .map_err(|e| DbError::query(dst_db, "set up the schema copy session", e))?;
    let mut created = 0;
    for e in dump
        .entries
        .iter()
        .filter(|e| !e.is_post_copy() && !e.is_belt_capture())
    {
        tx.batch_execute(&e.sql)
            .await
            .map_err(|source| apply_error(dst_db, e, source))?;
        created += 1;
    }
    tx.commit()
        .await
        .map_err(|e| DbError::query(dst_db, "commit schema copy", e))?;
    Ok(created)
}

/// Builds the indexes, triggers and (NOT VALID) foreign keys after the copy. Objects
/// that already exist (a restart midway) are skipped. Returns how many it created.
pub async fn copy_after(src: &DbSpec, dst: &Client, dst_db: &str) -> Result<usize, SchemaError> {
    let dump = read_dump(src, None).await?;
    dst.batch_execute(&dump.preamble)
        .await
        .map_err(|e| DbError::query(dst_db, "set up the schema copy session", e))?;
    let mut created = 0;
    for e in dump
        .entries
        .iter()
        .filter(|e| e.is_post_copy() && !e.is_belt_capture())
    {
        let sql = if e.kind == "FK CONSTRAINT" {
            format!("{} NOT VALID;", e.sql.trim_end_matches(';'))
        } else {
            e.sql.clone()
        };
        match dst.batch_execute(&sql).await {
            Ok(()) => created += 1,
            Err(err) if matches!(err.code().map(|c| c.code()), Some("42P07" | "42710")) => {}
            Err(err) => return Err(apply_error(dst_db, e, err)),
        }
    }
    dst.batch_execute("set search_path = pg_catalog, pg_temp")
        .await
        .map_err(|e| DbError::query(dst_db, "reset search_path", e))?;
    Ok(created)
}

/// Creates one table of the source on the target, with everything pg_dump dumps with
/// it (foreign keys `NOT VALID`, as at setup), in one transaction: a table created on
/// the source after its sync was added. Returns how many objects it created.
pub async fn create_table(
    src: &DbSpec,
    dst: &mut Client,
    dst_db: &str,
    table: &TableName,
) -> Result<usize, SchemaError> {
    let dump = read_dump(src, Some(table)).await?;
    let tx = dst
        .transaction()
        .await
        .map_err(|e| DbError::query(dst_db, "begin table copy", e))?;
    tx.batch_execute(&dump.preamble)
        .await
        .map_err(|e| DbError::query(dst_db, "set up the schema copy session", e))?;
    let mut created = 0;
    for e in dump.entries.iter().filter(|e| !e.is_belt_capture()) {
        let sql = if e.kind == "FK CONSTRAINT" {
            format!("{} NOT VALID;", e.sql.trim_end_matches(';'))
        } else {
            e.sql.clone()
        };
        tx.batch_execute(&sql)
            .await
            .map_err(|source| apply_error(dst_db, e, source))?;
        created += 1;
    }
    tx.commit()
        .await
        .map_err(|e| DbError::query(dst_db, "commit table copy", e))?;
    Ok(created)
}
