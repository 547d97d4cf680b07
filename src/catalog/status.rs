//! What the daemon reports about each sync, and what beltctl asks of it (kicks).

use rusqlite::{params, OptionalExtension};

use super::model::{DirectionStatus, SyncStatus};
use super::states::SyncState;
use super::{Catalog, CatalogError};
use crate::engine::Snapshot;

impl Catalog {
    /// Asks the daemon for a round; returns the kick number to wait for.
    pub fn kick(&mut self, name: &str) -> Result<i64, CatalogError> {
        self.require_sync(name)?;
        self.conn
            .query_row(
                "update syncs set kick_seq = kick_seq + 1 where name = ?1 returning kick_seq",
                [name],
                |r| r.get(0),
            )
            .map_err(self.err("kick sync"))
    }

    /// The status the daemon last reported.
    pub fn status(&self, sync: &str) -> Result<SyncStatus, CatalogError> {
        self.conn
            .query_row(
                "select state, last_error, rounds, rows_applied, pending_rows, lag_seconds, \
                 last_round_at, kick_done, updated_at, directions, clock_offset_ms, conflicts, \
                 (select count(*) from parked p where p.sync = ?1), \
                 (select coalesce(sum(rows), 0) from copy_progress c where c.sync = ?1), \
                 (select coalesce(sum(max(total, rows)), 0) from copy_progress c where c.sync = ?1), \
                 (select copy from syncs s where s.name = ?1), errors, last_error_at, consistent \
                 from sync_status where sync = ?1",
                [sync],
                |r| {
                    Ok(SyncStatus {
                        state: r.get(0)?,
                        last_error: r.get(1)?,
                        rounds: r.get(2)?,
                        rows_applied: r.get(3)?,
                        pending_rows: r.get(4)?,
                        lag_seconds: r.get(5)?,
                        last_round_at: r.get(6)?,
                        kick_done: r.get(7)?,
                        updated_at: r.get(8)?,
                        directions: serde_json::from_str(&r.get::<_, String>(9)?).unwrap_or_default(),
                        clock_offset_ms: r.get(10)?,
                        conflicts: r.get(11)?,
                        parked_rows: r.get(12)?,
                        copy_rows: r.get(13)?,
                        copy_total: r.get(14)?,
                        copy_state: r.get(15)?,
                        errors: r.get(16)?,
                        last_error_at: r.get(17)?,
                        consistent: r.get(18)?,
                    })
                },
            )
            .optional()
            .map_err(self.err("read status"))?
            .ok_or_else(|| CatalogError::NotFound {
                kind: "sync",
                name: sync.to_string(),
            })
    }

    /// Records a state change and, for failures, the error a user should see.
    pub fn set_state(
        &mut self,
        sync: &str,
        state: SyncState,
        error: Option<&str>,
    ) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "update sync_status set state = ?2, last_error = coalesce(?3, last_error), \
                 errors = errors + (?3 is not null), \
                 last_error_at = case when ?3 is null then last_error_at \
                                      else strftime('%Y-%m-%dT%H:%M:%fZ', 'now') end, \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') where sync = ?1",
                params![sync, state, error],
            )
            .map_err(self.err("store status"))?;
        Ok(())
    }

    /// A finished round's new positions and its status, in one transaction: one
    /// commit of the catalog per round rather than one per statement (at 50 rounds a
    /// second that is the daemon's own write load), and never the one without the
    /// other.
    pub fn round_stored(
        &mut self,
        sync: &str,
        positions: &[(String, Snapshot)],
        done: &RoundRecord,
    ) -> Result<(), CatalogError> {
        self.conn
            .execute_batch("begin")
            .map_err(self.err("store round"))?;
        let stored = positions
            .iter()
            .try_for_each(|(db, p)| self.set_position(sync, db, p))
            .and_then(|()| self.round_done(sync, done));
        match stored {
            Ok(()) => self.conn.execute_batch("commit").map_err(self.err("store round")),
            Err(e) => {
                let _ = self.conn.execute_batch("rollback");
                Err(e)
            }
        }
    }

    /// Records a finished round: rows applied, what is still pending per direction,
    /// the clock offset and the kick it answered.
    pub fn round_done(&mut self, sync: &str, done: &RoundRecord) -> Result<(), CatalogError> {
        let pending: i64 = done.directions.iter().map(|d| d.pending_rows).sum();
        let lag = done.directions.iter().map(|d| d.lag_seconds).fold(0.0, f64::max);
        let directions = serde_json::to_string(&done.directions).expect("directions serialize");
        self.conn
            .execute(
                "update sync_status set state = 'replicating', last_error = null, rounds = rounds + 1, \
                 rows_applied = rows_applied + ?2, pending_rows = ?3, lag_seconds = ?4, \
                 kick_done = max(kick_done, ?5), directions = ?6, clock_offset_ms = ?7, \
                 conflicts = conflicts + ?8, consistent = ?9, \
                 last_round_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') where sync = ?1",
                params![
                    sync,
                    done.rows as i64,
                    pending,
                    lag,
                    done.kick,
                    directions,
                    done.clock_offset_ms,
                    done.conflicts as i64,
                    done.consistent
                ],
            )
            .map_err(self.err("store round"))?;
        Ok(())
    }
}

/// What a finished round reports to the catalog.
#[derive(Debug, Clone, Default)]
pub struct RoundRecord {
    pub rows: u64,
    pub directions: Vec<DirectionStatus>,
    pub kick: i64,
    pub clock_offset_ms: Option<f64>,
    pub conflicts: usize,
    /// The round was one transaction per side.
    pub consistent: bool,
}
