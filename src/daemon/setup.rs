//! Sets a new sync up inside the daemon, so that it survives a dropped terminal:
//! schema (when the target has none of the tables), capture, position, initial copy
//! (rule 6 lives in `crate::copy`), then indexes and foreign keys.
//!
//! The catalog's [`CopyState`] records how far it got; the copy itself is a
//! [`CopyJob`].

use tokio::sync::watch;
use tracing::info;

use super::copy_job::CopyJob;
use super::error::SyncError;
use super::session::Session;
use crate::capture::syncs;
use crate::catalog::{CatalogHandle, CopyState, SyncState};
use crate::engine::batch::current_snapshot;
use crate::pg::KeyedTable;
use crate::pg::{connect, DbSpec};
use crate::schema;

/// One sync's setup, as its task runs it.
pub struct Setup<'a> {
    pub catalog: &'a CatalogHandle,
    pub sync: &'a str,
    pub specs: &'a [DbSpec; 2],
    pub sources: [bool; 2],
    pub stop: &'a watch::Receiver<bool>,
    pub config: &'a crate::config::Config,
}

impl Setup<'_> {
    /// The database copied from (the first source) and the one copied to.
    fn ends(&self) -> (&DbSpec, &DbSpec) {
        let first = crate::catalog::first_source(self.sources);
        (&self.specs[first], &self.specs[1 - first])
    }

    async fn set(&self, copy: CopyState, state: SyncState) -> Result<(), SyncError> {
        let sync = self.sync.to_string();
        self.catalog
            .call(move |c| {
                c.set_copy_state(&sync, copy)?;
                c.set_state(&sync, state, None)
            })
            .await?;
        Ok(())
    }

    /// Before the sync's sessions open: copies the schema when the target database has
    /// no tables. Returns the copy state to go on from.
    pub async fn before_connect(&self, copy: CopyState) -> Result<CopyState, SyncError> {
        if !copy.before_schema() {
            return Ok(copy);
        }
        let (from, to) = self.ends();
        let mut dst = connect(to).await?;
        if !schema::target_is_empty(&dst, &to.name).await? {
            return Ok(copy);
        }
        self.set(CopyState::Schema, SyncState::Schema).await?;
        let created = schema::copy_before(from, &mut dst, &to.name).await?;
        info!(sync = %self.sync, objects = created, "schema copied");
        Ok(CopyState::Schema)
    }

    /// After the sessions opened (capture is installed): records the sources'
    /// positions, copies every table, builds what the schema copy left for after.
    /// `Ok(false)` when stopped before the end.
    pub async fn after_connect(&self, copy: CopyState, session: &Session) -> Result<bool, SyncError> {
        let sides = [0, 1].map(|i| (&session.sides[i].client, session.sides[i].db.as_str()));
        if copy.before_schema() {
            if let Some(at) = syncs::copied_at(sides, self.sync).await? {
                info!(sync = %self.sync, copied_at = %at, "both databases say this sync's copy finished: not copying again, rounds resume from the deltas there");
                self.set(CopyState::Done, SyncState::Replicating).await?;
                return Ok(true);
            }
            for (client, db) in sides {
                syncs::clear_copied(client, db, self.sync).await?;
            }
            let mut positions = Vec::new();
            for side in session.sides.iter().filter(|s| s.source) {
                let snapshot = current_snapshot(&side.client, &side.db, None).await?;
                positions.push((side.db.clone(), snapshot));
            }
            let sync = self.sync.to_string();
            self.catalog
                .call(move |c| {
                    positions
                        .iter()
                        .try_for_each(|(db, s)| c.set_position(&sync, db, s))
                })
                .await?;
        }
        let (from, to) = self.ends();
        let first = crate::catalog::first_source(self.sources);
        if copy != CopyState::Indexing {
            self.set(copy.copying(), SyncState::Copying).await?;
            let sync = self.sync.to_string();
            let tables = self
                .catalog
                .call(move |c| c.relations(&sync))
                .await?
                .iter()
                .map(KeyedTable::new)
                .collect();
            let job = CopyJob {
                catalog: self.catalog.clone(),
                sync: self.sync.to_string(),
                from: from.clone(),
                to: to.clone(),
                tables,
                jobs: self.config.copy_jobs,
                chunk_rows: self.config.copy_chunk_rows,
                stall: self.config.stall_timeout(),
                stop: self.stop.clone(),
                fence: session.sides[1 - first].fence.clone(),
            };
            if !job.run().await? {
                return Ok(false);
            }
            info!(sync = %self.sync, "initial copy done");
        }
        if copy.owes_indexes() {
            self.set(CopyState::Indexing, SyncState::Indexing).await?;
            let dst = connect(to).await?;
            let built = schema::copy_after(from, &dst, &to.name).await?;
            info!(sync = %self.sync, objects = built, "indexes and foreign keys built");
        }
        syncs::mark_copied(sides, self.sync).await?;
        self.set(CopyState::Done, SyncState::Replicating).await?;
        Ok(true)
    }
}
