//! Rule 5, last part: a row that cannot be applied does not stall the sync.
//!
//! When a chunk fails on a row's data — it collides on a non-key unique index, breaks
//! a check constraint, does not fit a column (SQLSTATE classes 22 and 23) — the round
//! halves the chunk until the failing range is one key. That key is parked: its deltas
//! are taken out of the delta tables, the caller records it with the database error,
//! and the rest of the table goes on. `beltctl retry` puts the key back in the delta
//! table of the side it came from, so the next round tries it again.

use serde::Serialize;

use super::plan::TablePlan;
use super::{EngineError, Side};
use crate::pg::error::render;
use crate::pg::DbError;

/// A key set aside because its row could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parked {
    pub schema: String,
    pub table: String,
    /// The key's values as text, in key column order.
    pub key: Vec<String>,
    /// The database whose row could not be applied, and where it failed.
    pub from_db: String,
    pub failed_db: String,
    pub error: String,
}

/// Whether `error` is about one row's data, so that narrowing the chunk can find it.
pub fn is_row_error(error: &EngineError) -> bool {
    match error {
        EngineError::Db(e) => e.code().is_some_and(|c| matches!(&c.code()[..2], "22" | "23")),
        _ => false,
    }
}

/// Takes `key` of `table` out of both sides' delta tables and describes why.
pub async fn park(
    sides: &[Side; 2],
    table: &TablePlan,
    key: &[String],
    error: &EngineError,
) -> Result<Parked, DbError> {
    let sql = delete_sql(table, key);
    for side in sides.iter().filter(|s| s.source) {
        side.client.execute(&sql, &[]).await.map_err(|e| {
            DbError::query(
                &side.db,
                format!("park a key of {}", table.table.display_name()),
                e,
            )
        })?;
    }
    Ok(describe([&sides[0].db, &sides[1].db], table, key, error))
}

/// The statement that takes `key` out of `table`'s delta table.
pub fn delete_sql(table: &TablePlan, key: &[String]) -> String {
    format!(
        "delete from {} where ({}) = ({})",
        table.delta_sql(),
        table.key_list(),
        table.key_values(key)
    )
}

/// The record of `key` parked after `error`: which side's row failed where.
pub fn describe(dbs: [&str; 2], table: &TablePlan, key: &[String], error: &EngineError) -> Parked {
    let failed_db = failed_db(dbs, error);
    let from_db = if failed_db == dbs[0] { dbs[1] } else { dbs[0] };
    Parked {
        schema: table.table.schema.clone(),
        table: table.table.name.clone(),
        key: key.to_vec(),
        from_db: from_db.to_string(),
        failed_db: failed_db.to_string(),
        error: render(error),
    }
}

/// The database where `error` happened (the second when it does not say).
pub fn failed_db<'a>(dbs: [&'a str; 2], error: &EngineError) -> &'a str {
    match error {
        EngineError::Db(DbError::Query { db, .. }) if db == dbs[0] => dbs[0],
        _ => dbs[1],
    }
}

/// Puts `key` of `table` back in the delta table of the database it came from
/// (`client`, named `db`), and wakes the daemon: the next round tries it again.
pub async fn requeue(
    client: &tokio_postgres::Client,
    db: &str,
    table: &crate::pg::introspect::TableInfo,
    key: &[String],
) -> Result<(), DbError> {
    let what = format!("re-queue a key of {}", table.display_name());
    let delta: String = client
        .query_one("select belt.delta_name($1, $2)", &[&table.schema, &table.name])
        .await
        .map_err(|e| DbError::query(db, what.clone(), e))?
        .get(0);
    let plan = TablePlan::new(table, &delta);
    client
        .batch_execute(&format!(
            "insert into {} ({}) values ({}); select pg_notify({}, '')",
            plan.delta_sql(),
            plan.key_list(),
            plan.key_values(key),
            crate::pg::quote::literal(crate::capture::KICK_CHANNEL),
        ))
        .await
        .map_err(|e| DbError::query(db, what, e))
}
