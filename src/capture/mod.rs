//! Change capture: the triggers and delta tables that record which keys changed.
//!
//! Rule 9 of DESIGN.md lives here: everything belt puts on a production database is
//! in schema `belt`, comes from the versioned script `sql/capture.sql`, pins its
//! `search_path`, quotes every identifier, and installs and uninstalls idempotently.
//!
//! A delta row holds only the key of a changed row, the writing transaction's txid,
//! `clock_timestamp()` and the operation (`i`, `u`, `d`; read only to name the kind
//! of a conflict): the engine fetches the row's current state itself (rule 2)
//! and uses the txid to cut batches by snapshot (rule 1). Statement-level triggers
//! with transition tables are the default (one INSERT … SELECT and one `pg_notify`
//! per statement); the row-level variant stays in the script for the benchmark that
//! compares them.

pub mod doorbell;
pub mod syncs;

use tokio_postgres::Client;

use crate::pg::introspect::TableInfo;
use crate::pg::DbError;

const CAPTURE_SQL: &str = include_str!("../../sql/capture.sql");

/// Version of `sql/capture.sql`; a database with an older one is upgraded on install.
pub const CAPTURE_VERSION: i32 = 11;

/// The NOTIFY channel the triggers signal once per statement while a daemon waits
/// ([`doorbell`]).
pub const KICK_CHANNEL: &str = "belt_kick";

/// How capture triggers fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerMode {
    /// Statement-level with transition tables (default).
    Statement,
    /// Row-level, one delta insert per row (kept for the benchmark).
    Row,
}

impl TriggerMode {
    fn as_sql(self) -> &'static str {
        match self {
            TriggerMode::Statement => "statement",
            TriggerMode::Row => "row",
        }
    }
}

/// A captured table and the delta table that records its changes.
#[derive(Debug, Clone)]
pub struct Captured {
    pub table: TableInfo,
    /// Name of the delta table inside schema `belt`.
    pub delta: String,
}

/// Installs (or upgrades) schema `belt` and captures every keyed table in `tables`.
/// Tables without a key are skipped: they are reported, not captured.
pub async fn install(
    client: &mut Client,
    db: &str,
    tables: &[TableInfo],
    mode: TriggerMode,
) -> Result<Vec<Captured>, DbError> {
    install_schema(client, db).await?;
    // One table per transaction: creating a trigger locks its table, and holding
    // several such locks at once could deadlock with an application transaction
    // that touches the same tables in another order. A short lock_timeout keeps a
    // long-running application transaction from queueing everyone behind us; the
    // install is retried later.
    let mut captured = Vec::new();
    for table in tables {
        let Some(key) = &table.key else { continue };
        let ctx = || format!("install capture on {}", table.display_name());
        let tx = client
            .transaction()
            .await
            .map_err(|e| DbError::query(db, ctx(), e))?;
        tx.batch_execute("set local lock_timeout = '5s'")
            .await
            .map_err(|e| DbError::query(db, ctx(), e))?;
        let delta: String = tx
            .query_one(
                "select belt.install_table($1, $2, $3, $4)",
                &[&table.schema, &table.name, key, &mode.as_sql()],
            )
            .await
            .map_err(|e| DbError::query(db, ctx(), e))?
            .get(0);
        tx.commit().await.map_err(|e| DbError::query(db, ctx(), e))?;
        captured.push(Captured {
            table: table.clone(),
            delta,
        });
    }
    Ok(captured)
}

/// Installs (or upgrades) schema `belt` alone, with no trigger: on a database that
/// only receives, for the sync's row in `belt.syncs`.
pub async fn install_schema(client: &mut Client, db: &str) -> Result<(), DbError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| DbError::query(db, "begin capture install", e))?;
    tx.execute("select pg_advisory_xact_lock(hashtext('belt.capture'))", &[])
        .await
        .map_err(|e| DbError::query(db, "lock capture install", e))?;
    let installed: bool = tx
        .query_one("select to_regproc('belt.capture_version') is not null", &[])
        .await
        .map_err(|e| DbError::query(db, "look for schema belt", e))?
        .get(0);
    let version: i32 = if installed {
        tx.query_one("select belt.capture_version()", &[])
            .await
            .map_err(|e| DbError::query(db, "read capture version", e))?
            .get(0)
    } else {
        0
    };
    if version < CAPTURE_VERSION {
        tx.batch_execute(CAPTURE_SQL)
            .await
            .map_err(|e| DbError::query(db, "install schema belt (needs CREATE on the database)", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| DbError::query(db, "commit capture install", e))
}

/// Removes capture from the given tables; safe to run again.
pub async fn uninstall_tables(client: &Client, db: &str, tables: &[TableInfo]) -> Result<(), DbError> {
    if !schema_exists(client, db).await? {
        return Ok(());
    }
    for t in tables {
        client
            .execute("select belt.uninstall_table($1, $2)", &[&t.schema, &t.name])
            .await
            .map_err(|e| DbError::query(db, format!("remove capture from {}", t.display_name()), e))?;
    }
    Ok(())
}

/// Removes schema `belt` and with it every trigger belt installed; safe to run again.
pub async fn uninstall_all(client: &Client, db: &str) -> Result<(), DbError> {
    client
        .batch_execute("drop schema if exists belt cascade")
        .await
        .map_err(|e| DbError::query(db, "drop schema belt", e))
}

async fn schema_exists(client: &Client, db: &str) -> Result<bool, DbError> {
    Ok(client
        .query_one("select to_regproc('belt.uninstall_table') is not null", &[])
        .await
        .map_err(|e| DbError::query(db, "look for schema belt", e))?
        .get(0))
}
