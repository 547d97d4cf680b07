//! Rule 5 of DESIGN.md: a round is atomic per chunk and side, and retried as a whole.
//!
//! A round fixes its batch by the source snapshot `S_round` (rule 1), then applies it
//! table by table in key-range chunks of bounded size, each its own transaction on
//! both sides: the target commits, then the source deletes the deltas it consumed.
//! Only when every chunk is done does the caller store `S_round` as the new position.
//! A crash anywhere repeats at most one chunk (state-based apply makes that harmless,
//! rule 2) and never starts the backlog over, because finished chunks' deltas are gone.

use tokio_postgres::Client;

use super::apply::{apply_chunk, Ends};
use super::batch::{batch_filter, current_snapshot};
use super::plan::TablePlan;
use super::snapshot::Snapshot;
use super::{sequences, truncate, EngineError};
use crate::pg::DbError;

/// Default number of keys applied per chunk.
pub const DEFAULT_CHUNK_KEYS: i64 = 20_000;

/// What a finished (or stopped) round did.
#[derive(Debug, Clone)]
pub struct RoundResult {
    /// The snapshot to store as the new position; `None` when the round was stopped
    /// before its last chunk.
    pub snapshot: Option<Snapshot>,
    pub keys: u64,
    pub rows: u64,
    pub chunks: u64,
    pub truncates: u64,
}

/// Runs one round from `prev`. `stop` is asked between chunks; when it says yes the
/// round ends after the chunk that is running, without a new position.
pub async fn run_round(
    ends: Ends<'_>,
    src: &mut Client,
    dst: &mut Client,
    tables: &[TablePlan],
    prev: Option<&Snapshot>,
    chunk_keys: i64,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<RoundResult, EngineError> {
    let snapshot = current_snapshot(src, ends.src, prev).await?;
    let batch = batch_filter(&snapshot);
    let mut result = RoundResult {
        snapshot: None,
        keys: 0,
        rows: 0,
        chunks: 0,
        truncates: 0,
    };
    result.truncates = truncate::apply_truncates(ends, src, dst, tables, &batch).await?;
    for table in tables {
        while let Some(chunk) = apply_chunk(ends, src, dst, table, &batch, chunk_keys).await? {
            result.keys += chunk.keys;
            result.rows += chunk.rows;
            result.chunks += 1;
            tracing::debug!(table = %table.table.display_name(), keys = chunk.keys, rows = chunk.rows, "chunk applied");
            if stop() {
                return Ok(result);
            }
        }
    }
    let seqs: Vec<_> = tables.iter().flat_map(|t| t.sequences.iter().cloned()).collect();
    sequences::carry(src, dst, ends, &seqs).await?;
    result.snapshot = Some(snapshot);
    Ok(result)
}

/// Changes captured and not yet applied, and the age in seconds of the oldest.
pub async fn pending(src: &Client, db: &str, tables: &[TablePlan]) -> Result<(i64, f64), DbError> {
    if tables.is_empty() {
        return Ok((0, 0.0));
    }
    let parts: Vec<String> = tables
        .iter()
        .map(|t| format!("select belt_changed_at from {}", t.delta_sql()))
        .collect();
    let sql = format!(
        "select count(*), coalesce(extract(epoch from clock_timestamp() - min(belt_changed_at))::float8, 0) \
         from ({}) d",
        parts.join(" union all ")
    );
    let row = src
        .query_one(&sql, &[])
        .await
        .map_err(|e| DbError::query(db, "count pending changes", e))?;
    Ok((row.get(0), row.get(1)))
}
