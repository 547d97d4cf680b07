//! The record of conflicts and parked keys.

use rusqlite::params;

use super::model::{ConflictRecord, ParkedRecord};
use super::store::fail;
use super::{Catalog, CatalogError};
use crate::engine::park::Parked;
use crate::engine::Conflict;

/// Conflicts kept per sync; older ones are deleted as new ones arrive.
pub const CONFLICTS_KEPT: i64 = 10_000;

impl Catalog {
    /// Stores conflicts, keeping the newest [`CONFLICTS_KEPT`] of the sync.
    pub fn record_conflicts(
        &mut self,
        sync: &str,
        dbs: [&str; 2],
        strategy: &str,
        conflicts: &[Conflict],
    ) -> Result<(), CatalogError> {
        let path = self.path.clone();
        let err = |context| fail(&path, context);
        let tx = self
            .conn
            .transaction()
            .map_err(err("begin recording conflicts"))?;
        for c in conflicts {
            tx.execute(
                "insert into conflicts (sync, table_name, key, strategy, first_db, first_changed_at, \
                 second_db, second_changed_at, winner, loser_row, kind) \
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    sync,
                    c.table,
                    c.key,
                    strategy,
                    dbs[0],
                    c.first_changed_at,
                    dbs[1],
                    c.second_changed_at,
                    c.winner,
                    c.loser_row,
                    c.kind.as_str()
                ],
            )
            .map_err(err("record conflict"))?;
        }
        tx.execute(
            "delete from conflicts where sync = ?1 and id <= (select max(id) from conflicts where sync = ?1) - ?2",
            params![sync, CONFLICTS_KEPT],
        )
        .map_err(err("trim conflicts"))?;
        tx.commit().map_err(err("commit conflicts"))?;
        Ok(())
    }

    /// The newest `limit` conflicts of a sync, newest first.
    pub fn conflicts(&self, sync: &str, limit: i64) -> Result<Vec<ConflictRecord>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare(
                "select recorded_at, table_name, key, strategy, first_db, first_changed_at, second_db, \
                 second_changed_at, winner, loser_row, kind from conflicts where sync = ?1 order by id desc limit ?2",
            )
            .map_err(self.err("list conflicts"))?;
        let rows = stmt
            .query_map(params![sync, limit], |r| {
                Ok(ConflictRecord {
                    recorded_at: r.get(0)?,
                    table: r.get(1)?,
                    key: r.get(2)?,
                    strategy: r.get(3)?,
                    first_db: r.get(4)?,
                    first_changed_at: r.get(5)?,
                    second_db: r.get(6)?,
                    second_changed_at: r.get(7)?,
                    winner: r.get(8)?,
                    loser_row: r.get(9)?,
                    kind: r.get(10)?,
                })
            })
            .map_err(self.err("list conflicts"))?;
        rows.collect::<Result<_, _>>().map_err(self.err("list conflicts"))
    }

    /// Stores keys the daemon parked.
    pub fn record_parked(&mut self, sync: &str, parked: &[Parked]) -> Result<(), CatalogError> {
        for p in parked {
            let key = serde_json::to_string(&p.key).expect("key serializes");
            self.conn
                .execute(
                    "insert into parked (sync, schema_name, table_name, key, from_db, failed_db, error) \
                     values (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![sync, p.schema, p.table, key, p.from_db, p.failed_db, p.error],
                )
                .map_err(self.err("record parked key"))?;
        }
        Ok(())
    }

    /// Every parked key of a sync, oldest first.
    pub fn parked(&self, sync: &str) -> Result<Vec<ParkedRecord>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare(
                "select id, parked_at, schema_name, table_name, key, from_db, failed_db, error \
                 from parked where sync = ?1 order by id",
            )
            .map_err(self.err("list parked keys"))?;
        let rows = stmt
            .query_map([sync], |r| {
                Ok(ParkedRecord {
                    id: r.get(0)?,
                    parked_at: r.get(1)?,
                    parked: Parked {
                        schema: r.get(2)?,
                        table: r.get(3)?,
                        key: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                        from_db: r.get(5)?,
                        failed_db: r.get(6)?,
                        error: r.get(7)?,
                    },
                })
            })
            .map_err(self.err("list parked keys"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("list parked keys"))
    }

    /// Forgets a parked key (after it was re-queued).
    pub fn unpark(&mut self, id: i64) -> Result<(), CatalogError> {
        self.conn
            .execute("delete from parked where id = ?1", [id])
            .map_err(self.err("unpark key"))?;
        Ok(())
    }
}
