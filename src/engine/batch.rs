//! Rule 1 of DESIGN.md: batches are cut by transaction snapshots, never by a serial.
//!
//! Transactions commit out of order. A delta row with a smaller id can become visible
//! after a larger one was consumed, so `WHERE id > last_id` loses it for good. Every
//! delta row instead carries the txid that wrote it. A round reads the source's
//! current snapshot `S_round`; its batch is every delta row committed in `S_round`. A
//! transaction still open at `S_round` is not in the batch and is not lost: its rows
//! stay in the delta table and are in the next round's snapshot. (PgQ's tick idea.)
//!
//! Where this departs from DESIGN.md's wording: the batch is not also filtered by
//! "not visible in the previous snapshot `S_prev`". Each chunk deletes the deltas it
//! applied in the same transaction pair, so every delta visible in `S_prev` is already
//! gone when the next round starts, and the filter could only ever drop a row: one
//! written after a crash that lost the source's last transactions
//! (`synchronous_commit = off`) can reuse a txid below `S_prev`'s xmax and would be
//! skipped for good. The stored position still guards the other way: a source whose
//! txids are behind it was restored or failed over, and the sync stops (rule 5).
//! The delta tables are indexed on their key (chunks are key ranges), not on txid.

use tokio_postgres::GenericClient;

use super::snapshot::Snapshot;
use super::EngineError;
use crate::pg::DbError;

/// SQL condition on a delta table's rows selecting the batch of snapshot `round`.
pub fn batch_filter(round: &Snapshot) -> String {
    format!("txid_visible_in_snapshot(belt_txid, {})", round.sql())
}

/// Reads the source's current snapshot: the upper edge of the next batch.
///
/// Refuses to go on when the source is behind the stored position — restored from a
/// backup or failed over to a lagging replica — because every change between the two
/// would otherwise be skipped without a word.
pub async fn current_snapshot(
    src: &impl GenericClient,
    db: &str,
    prev: Option<&Snapshot>,
) -> Result<Snapshot, EngineError> {
    let text: String = src
        .query_typed_one("select txid_current_snapshot()::text", &[])
        .await
        .map_err(|e| DbError::query(db, "read snapshot", e))?
        .get(0);
    let snapshot: Snapshot = text
        .parse()
        .map_err(|e: super::snapshot::BadSnapshot| DbError::Settings {
            db: db.to_string(),
            message: e.to_string(),
        })?;
    if let Some(prev) = prev {
        if snapshot.xmax() < prev.xmax() {
            return Err(EngineError::SourceMoved {
                db: db.to_string(),
                current: snapshot.xmax(),
                stored: prev.xmax(),
            });
        }
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_takes_what_the_snapshot_sees() {
        let round: Snapshot = "100:105:101".parse().unwrap();
        assert_eq!(
            batch_filter(&round),
            "txid_visible_in_snapshot(belt_txid, '100:105:101'::txid_snapshot)"
        );
    }
}
