//! TRUNCATE is captured by a statement trigger into `belt.truncates` and applied to
//! the other side before the round's rows, all tables of one round in one statement
//! so that foreign keys between them do not block it. The receiving session is in
//! replica mode, so the truncate is not captured there again.

use tokio_postgres::IsolationLevel;

use super::plan::TablePlan;
use super::Side;
use crate::pg::DbError;

/// Applies the truncates of `from`'s batch to `to`; returns how many tables.
pub async fn apply_truncates(
    from: &mut Side,
    to: &Side,
    tables: &[TablePlan],
    batch: &str,
) -> Result<u64, DbError> {
    let rels: Vec<String> = tables.iter().map(|t| t.table.qualified()).collect();
    let stx = from
        .client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(|e| DbError::query(&from.db, "begin reading truncates", e))?;
    let filter = format!("{batch} and rel = any($1)");
    let found: Vec<String> = stx
        .query(
            &format!("select distinct rel from belt.truncates where {filter} order by 1"),
            &[&rels],
        )
        .await
        .map_err(|e| DbError::query(&from.db, "read truncates", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if found.is_empty() {
        return Ok(0);
    }
    // ONLY keeps a legacy inheritance child out; a partitioned table cannot be
    // truncated ONLY, and its partitions are its rows.
    let targets: Vec<String> = to
        .client
        .query(
            "select case when c.relkind = 'p' then r else 'only ' || r end \
             from unnest($1::text[]) r join pg_class c on c.oid = r::regclass",
            &[&found],
        )
        .await
        .map_err(|e| DbError::query(&to.db, "look up truncated tables", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    to.client
        .batch_execute(&format!("truncate {}", targets.join(", ")))
        .await
        .map_err(|e| DbError::query(&to.db, format!("truncate {}", found.join(", ")), e))?;
    stx.execute(&format!("delete from belt.truncates where {filter}"), &[&rels])
        .await
        .map_err(|e| DbError::query(&from.db, "purge applied truncates", e))?;
    stx.commit()
        .await
        .map_err(|e| DbError::query(&from.db, "purge applied truncates", e))?;
    Ok(found.len() as u64)
}
