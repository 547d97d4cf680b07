//! TRUNCATE is captured by a statement trigger into `belt.truncates` and applied to
//! the target before the round's rows, all tables of one round in one statement so
//! that foreign keys between them do not block it.

use tokio_postgres::{Client, IsolationLevel};

use super::apply::Ends;
use super::plan::TablePlan;
use crate::pg::DbError;

/// Applies the batch's truncates; returns how many tables were truncated.
pub async fn apply_truncates(
    ends: Ends<'_>,
    src: &mut Client,
    dst: &mut Client,
    tables: &[TablePlan],
    batch: &str,
) -> Result<u64, DbError> {
    let rels: Vec<String> = tables.iter().map(|t| t.table.qualified()).collect();
    let stx = src
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(|e| DbError::query(ends.src, "begin reading truncates", e))?;
    let filter = format!("{batch} and rel = any($1)");
    let found: Vec<String> = stx
        .query(
            &format!("select distinct rel from belt.truncates where {filter} order by 1"),
            &[&rels],
        )
        .await
        .map_err(|e| DbError::query(ends.src, "read truncates", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if found.is_empty() {
        return Ok(0);
    }
    dst.batch_execute(&format!("truncate only {}", found.join(", ")))
        .await
        .map_err(|e| DbError::query(ends.dst, format!("truncate {}", found.join(", ")), e))?;
    stx.execute(&format!("delete from belt.truncates where {filter}"), &[&rels])
        .await
        .map_err(|e| DbError::query(ends.src, "purge applied truncates", e))?;
    stx.commit()
        .await
        .map_err(|e| DbError::query(ends.src, "purge applied truncates", e))?;
    Ok(found.len() as u64)
}
