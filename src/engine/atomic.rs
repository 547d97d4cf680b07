//! Rule 5 of DESIGN.md: a round is atomic per side. In steady state the whole round —
//! the truncates and the rows of every table of the sync — is one REPEATABLE READ
//! transaction per side, read from one snapshot of each source, so the receiving
//! side goes from one consistent state of the source to a later one at one commit:
//! a reader never sees an order without its lines.
//!
//! The snapshot of the round *is* the source transaction's own snapshot: the batch
//! (every delta it sees) and the rows read are the same instant, so no transaction
//! that committed later is half in. Only a backlog over the budget (`chunk_keys`
//! keys, or `chunk_bytes` by the tables' row estimates) is left to the round in
//! chunks, which is bounded but not atomic (the status then says
//! `consistent: false`); the caller falls back to chunks too when this round races
//! the application past its retries or meets a row that cannot be applied, since
//! chunks narrow those down to the one key.

use tokio_postgres::Transaction;

use super::apply::{apply_range, begin, create_temp_tables, purge, ChunkResult};
use super::batch::{batch_filter, current_snapshot};
use super::plan::TablePlan;
use super::snapshot::Snapshot;
use super::{truncate, EngineError, Side, Strategy};
use crate::pg::DbError;

/// What an atomic round did.
#[derive(Debug, Default)]
pub struct AtomicRound {
    /// Each source's snapshot: its batch, and the position to store.
    pub snapshots: [Option<Snapshot>; 2],
    /// The tables' results, summed.
    pub applied: ChunkResult,
    /// Tables (or partitions) truncated.
    pub truncates: u64,
}

/// The most one atomic round may carry.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub keys: i64,
    pub bytes: i64,
}

/// Runs the round as one transaction per side. `Ok(None)` when the backlog is over
/// `budget`: nothing was written, and the caller runs the round in chunks.
pub async fn run(
    sides: &mut [Side; 2],
    tables: &[TablePlan],
    positions: &[Option<Snapshot>; 2],
    budget: Budget,
    strategy: Strategy,
) -> Result<Option<AtomicRound>, EngineError> {
    let [a, b] = sides;
    let dbs = [a.db.as_str(), b.db.as_str()];
    let sources = [a.source, b.source];
    let (ta, tb) = tokio::try_join!(begin(&mut a.client, dbs[0]), begin(&mut b.client, dbs[1]))?;
    let txs = [&ta, &tb];
    let mut round = AtomicRound::default();
    // Each source's snapshot, then how many keys of each table it changed.
    let mut changed = vec![[0i64; 2]; tables.len()];
    let mut keys = 0;
    let mut bytes = 0;
    for i in (0..2).filter(|&i| sources[i]) {
        round.snapshots[i] = Some(current_snapshot(txs[i], dbs[i], positions[i].as_ref()).await?);
        let counts = count_keys(txs[i], dbs[i], tables, budget.keys + 1).await?;
        for (t, n) in counts.into_iter().enumerate() {
            changed[t][i] = n;
            keys += n;
            bytes += n.saturating_mul(tables[t].row_bytes);
        }
    }
    if keys > budget.keys || bytes > budget.bytes {
        return Ok(None); // the transactions roll back on drop
    }
    let batches = round.snapshots.clone().map(|s| s.map(|s| batch_filter(&s)));
    for i in 0..2 {
        if let Some(batch) = &batches[i] {
            let latest = truncate::read(txs[i], dbs[i], tables, batch).await?;
            if !latest.is_empty() {
                truncate::apply(txs[1 - i], dbs[1 - i], sources[1 - i], tables, &latest).await?;
                round.truncates += latest.len() as u64;
            }
        }
    }
    for (table, n) in tables.iter().zip(&changed) {
        if n == &[0, 0] {
            continue;
        }
        create_temp_tables(txs[0], dbs[0], table).await?;
        create_temp_tables(txs[1], dbs[1], table).await?;
        let r = apply_range(txs, dbs, table, "true", sources, strategy).await?;
        for i in 0..2 {
            round.applied.rows_into[i] += r.rows_into[i];
            round.applied.keys_from[i] += r.keys_from[i];
        }
        round.applied.conflicts.extend(r.conflicts);
    }
    tokio::try_join!(commit(ta, dbs[0]), commit(tb, dbs[1]))?;
    // Only after both commits: a side whose commit failed gets every change again.
    for (i, side) in [&*a, &*b].into_iter().enumerate() {
        let (Some(batch), Some(snap)) = (&batches[i], &round.snapshots[i]) else {
            continue;
        };
        let snap = snap.to_string();
        for (table, n) in tables.iter().zip(&changed) {
            if n[i] > 0 {
                purge(side, table, "true", Some(&snap), Some(batch)).await?;
            }
        }
        if round.truncates > 0 {
            truncate::purge(&side.client, &side.db, tables, batch).await?;
        }
    }
    Ok(Some(round))
}

async fn commit(tx: Transaction<'_>, db: &str) -> Result<(), DbError> {
    tx.commit()
        .await
        .map_err(|e| DbError::query(db, "commit round", e))
}

/// How many distinct keys each table's delta holds in `tx`'s snapshot, counting no
/// further than `cap` each: one round trip for the whole sync.
async fn count_keys(
    tx: &Transaction<'_>,
    db: &str,
    tables: &[TablePlan],
    cap: i64,
) -> Result<Vec<i64>, DbError> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let counts: Vec<String> = tables
        .iter()
        .map(|t| {
            format!(
                "(select count(*) from (select distinct {k} from {d} limit {cap}) c)",
                k = t.key_list(),
                d = t.delta_sql()
            )
        })
        .collect();
    Ok(tx
        .query_one(&format!("select array[{}]::int8[]", counts.join(", ")), &[])
        .await
        .map_err(|e| DbError::query(db, "count the round's changed keys", e))?
        .get(0))
}
