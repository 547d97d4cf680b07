//! How wide a table's rows are, so that a chunk of multi-megabyte rows is cut by bytes
//! and not only by keys: 20 000 keys of 2 MB rows would take far longer than the
//! stall limit to move, and be retried at that size for ever.

use tokio_postgres::Client;

use super::TablePlan;
use crate::pg::DbError;

/// Rows read to estimate a table's width.
const SAMPLE_ROWS: i64 = 16;

/// The widest of a few rows of each table, in bytes of their text form (TOASTed
/// values included, which is what a chunk moves), stored in each plan.
pub async fn estimate(client: &Client, db: &str, plans: &mut [TablePlan]) -> Result<(), DbError> {
    for plan in plans.iter_mut() {
        let sql = format!(
            "select coalesce(max(octet_length(t::text)), 0)::int8 from (select * from {} limit {SAMPLE_ROWS}) t",
            plan.table.qualified()
        );
        plan.row_bytes = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| {
                DbError::query(
                    db,
                    format!("estimate the row size of {}", plan.table.display_name()),
                    e,
                )
            })?
            .get(0);
    }
    Ok(())
}
