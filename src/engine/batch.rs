//! Rule 1 of DESIGN.md: batches are cut by transaction snapshots, never by a serial.
//!
//! Transactions commit out of order. A delta row with a smaller id can become visible
//! after a larger one was consumed, so `WHERE id > last_id` loses it for good. Every
//! delta row instead carries the txid that wrote it. A round reads the source's
//! current snapshot `S_round`; its batch is every delta committed in `S_round` and not
//! already committed in the previous round's snapshot `S_prev`. A transaction still
//! open at `S_round` is not in the batch and is not lost: it is in the next one.
//! (This is PgQ's tick idea.)
//!
//! Consumed deltas are deleted in the same transaction pair that applies them, so the
//! `S_prev` test is a second guard, not the only one; the delta tables are indexed on
//! their key (chunks are key ranges) rather than on txid.

use tokio_postgres::Client;

use super::snapshot::Snapshot;
use super::EngineError;
use crate::pg::DbError;

/// SQL condition on a delta table's rows selecting the batch between `prev` and `round`.
pub fn batch_filter(round: &Snapshot, prev: Option<&Snapshot>) -> String {
    let mut filter = format!("txid_visible_in_snapshot(belt_txid, {})", round.sql());
    if let Some(prev) = prev {
        filter.push_str(&format!(
            " and not txid_visible_in_snapshot(belt_txid, {})",
            prev.sql()
        ));
    }
    filter
}

/// Reads the source's current snapshot: the upper edge of the next batch.
///
/// Refuses to go on when the source is behind the stored position — restored from a
/// backup or failed over to a lagging replica — because every change between the two
/// would otherwise be skipped without a word.
pub async fn current_snapshot(
    src: &Client,
    db: &str,
    prev: Option<&Snapshot>,
) -> Result<Snapshot, EngineError> {
    let text: String = src
        .query_one("select txid_current_snapshot()::text", &[])
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
    fn filter_excludes_previous_snapshot() {
        let round: Snapshot = "100:105:101".parse().unwrap();
        let prev: Snapshot = "90:95:".parse().unwrap();
        let f = batch_filter(&round, Some(&prev));
        assert!(f.contains("'100:105:101'::txid_snapshot"));
        assert!(f.contains("not txid_visible_in_snapshot(belt_txid, '90:95:'::txid_snapshot)"));
        assert!(!batch_filter(&round, None).contains("not"));
    }
}
