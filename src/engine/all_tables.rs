//! Every table of an atomic round applied in one pass per step, pipelined across the
//! tables: the summaries one way, then the other; the conflicts; each source's
//! winning rows; the applies. What [`super::apply::apply_range`] does for one table
//! and one range, without a round trip per table and step: one table streams from
//! its source while the receiver loads the one before.
//!
//! A session never sends and receives COPY data in the same step (that could wait on
//! itself), so the two directions of a step take turns. A refused row or a lost race
//! fails the whole pass; the round then rolls back to before it and applies table by
//! table, where such a key is found and set aside ([`super::atomic`]).

use futures_util::future::try_join_all;
use tokio_postgres::Transaction;

use super::apply::{apply_sent, conflicts, summary_copy, winners_rows, ChunkResult};
use super::plan::TablePlan;
use super::{EngineError, Strategy};
use crate::pg::pipe::{pipe_each, pipe_rows_each};
use crate::pg::prepared::Prepared;

/// Applies the changes of every table in `tables` both ways within `txs`, the whole
/// of each delta (the round's snapshot is the batch). `sources[i]`: side `i` sends.
/// `changed[t][i]`: the keys side `i` changed in `tables[t]` (zero on a target), as
/// the round counted them in the same snapshots: a side sends only the tables it
/// changed, and a summary goes over only where both sides changed the table.
pub(super) async fn apply_all(
    txs: [&Transaction<'_>; 2],
    dbs: [&str; 2],
    prepared: [&Prepared; 2],
    tables: &[&TablePlan],
    changed: &[[i64; 2]],
    sources: [bool; 2],
    strategy: Strategy,
) -> Result<ChunkResult, EngineError> {
    let mut result = ChunkResult::default();
    // A key can be in conflict only where both sides changed keys of the table; a
    // summary decides nothing anywhere else (one way, never: a target decides
    // nothing).
    let both_changed = tables_where(tables, changed, |c| {
        sources == [true, true] && c[0] > 0 && c[1] > 0
    });
    if !both_changed.is_empty() {
        for i in 0..2 {
            let copies: Vec<_> = both_changed.iter().map(|t| summary_copy(t, "true")).collect();
            pipe_each(side(txs, dbs, i), side(txs, dbs, 1 - i), &copies).await?;
        }
        let found = try_join_all(
            both_changed
                .iter()
                .map(|t| conflicts(txs, dbs, t, "true", strategy)),
        )
        .await?;
        result.conflicts = found.into_iter().flatten().collect();
        if strategy == Strategy::Abort && !result.conflicts.is_empty() {
            return Err(EngineError::ConflictAbort {
                conflicts: result.conflicts,
            });
        }
    }
    for i in (0..2).filter(|&i| sources[i]) {
        let sending = tables_where(tables, changed, |c| c[i] > 0);
        if sending.is_empty() {
            continue;
        }
        // The whole delta is the range: the same text every round, so the winners
        // are read by statements prepared once per connection.
        let copies: Vec<_> = sending
            .iter()
            .map(|t| winners_rows(t, "true", strategy, i == 0))
            .collect();
        let (from, to) = (side(txs, dbs, i), side(txs, dbs, 1 - i));
        let keys = pipe_rows_each(
            (from.0, from.1, prepared[i]),
            (to.0, to.1, prepared[1 - i]),
            &copies,
        )
        .await?;
        let sent: Vec<&TablePlan> = sending
            .iter()
            .zip(&keys)
            .filter(|(_, &k)| k > 0)
            .map(|(t, _)| *t)
            .collect();
        let rows = try_join_all(
            sent.iter()
                .map(|t| apply_sent(txs[1 - i], dbs[1 - i], prepared[1 - i], t)),
        )
        .await?;
        result.keys_from[i] = keys.iter().sum();
        result.rows_into[1 - i] = rows.iter().sum();
    }
    Ok(result)
}

/// The tables whose changed-key counts (`changed`, one per table) pass `keep`.
fn tables_where<'p>(
    tables: &[&'p TablePlan],
    changed: &[[i64; 2]],
    keep: impl Fn(&[i64; 2]) -> bool,
) -> Vec<&'p TablePlan> {
    tables
        .iter()
        .zip(changed)
        .filter(|(_, c)| keep(c))
        .map(|(t, _)| *t)
        .collect()
}

fn side<'a>(
    txs: [&'a Transaction<'_>; 2],
    dbs: [&'a str; 2],
    i: usize,
) -> (&'a str, &'a tokio_postgres::Client) {
    (dbs[i], txs[i].client())
}
