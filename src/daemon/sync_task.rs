//! One sync's life in the daemon: connect, wait for a change, run a round, report,
//! and on failure report and retry with backoff, without touching other syncs.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};
use tracing::{info, warn};

use super::session::Session;
use crate::catalog::{CatalogHandle, SyncDef};
use crate::engine::{run_round, Ends, EngineError};
use crate::pg::error::render;
use crate::pg::introspect::TableName;
use crate::pg::DbSpec;

/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Pause after a notification, so a burst of statements makes one round.
const COALESCE: Duration = Duration::from_millis(20);

/// Everything a sync task needs, handed over by the supervisor.
pub struct SyncTask {
    pub catalog: CatalogHandle,
    /// The sync's definition; the supervisor publishes changes (kicks) here.
    pub def: watch::Receiver<SyncDef>,
    /// Set to true to stop after the current chunk.
    pub stop: watch::Receiver<bool>,
    pub poll: Duration,
    pub chunk_keys: i64,
    /// Set once a round succeeds, so the next failure starts its backoff afresh.
    pub progressed: bool,
}

impl SyncTask {
    /// Runs until stopped. Errors are reported in the catalog, never returned.
    pub async fn run(mut self) {
        let name = self.def.borrow().name.clone();
        let mut backoff = Duration::from_millis(500);
        while !*self.stop.borrow() {
            match self.run_connected(&name).await {
                Ok(()) => break,
                Err((error, transient)) => {
                    if std::mem::take(&mut self.progressed) {
                        backoff = Duration::from_millis(500);
                    }
                    let state = if transient { "retrying" } else { "failed" };
                    warn!(sync = %name, error = %error, retry_in = ?backoff, "sync {state}");
                    let err = error.clone();
                    let n = name.clone();
                    let _ = self
                        .catalog
                        .call(move |c| c.set_state(&n, state, Some(&err)))
                        .await;
                    self.wait_or_kick(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        let n = name.clone();
        let _ = self.catalog.call(move |c| c.set_state(&n, "stopped", None)).await;
        info!(sync = %name, "sync stopped");
    }

    /// Connects and runs rounds until stopped (Ok) or an error (its text and whether
    /// it is transient).
    async fn run_connected(&mut self, name: &str) -> Result<(), (String, bool)> {
        let def = self.def.borrow().clone();
        let (src_spec, dst_spec, tables, mut position) = self.load(&def).await?;
        let mut session = Session::open(&src_spec, &dst_spec, &tables)
            .await
            .map_err(|e| (render(&e), e.is_transient()))?;
        info!(sync = %name, tables = session.plans.len(), "sync connected");
        let n = name.to_string();
        let _ = self
            .catalog
            .call(move |c| c.set_state(&n, "replicating", None))
            .await;
        loop {
            let kick = self.def.borrow().kick_seq;
            let stop = self.stop.clone();
            let Session {
                src_db,
                dst_db,
                src,
                dst,
                plans,
                ..
            } = &mut session;
            let ends = Ends {
                src: src_db,
                dst: dst_db,
            };
            let started = Instant::now();
            let result = run_round(ends, src, dst, plans, position.as_ref(), self.chunk_keys, &|| {
                *stop.borrow()
            })
            .await
            .map_err(|e: EngineError| (render(&e), e.is_transient()))?;
            let pending = crate::engine::round::pending(src, src_db, plans)
                .await
                .map_err(|e| (render(&e), e.is_transient()))?;
            if let Some(snapshot) = result.snapshot.clone() {
                let (n, db, s) = (name.to_string(), src_db.clone(), snapshot.clone());
                self.catalog
                    .call(move |c| c.set_position(&n, &db, &s))
                    .await
                    .map_err(|e| (render(&e), true))?;
                position = Some(snapshot);
                self.progressed = true;
                let n = name.to_string();
                let rows = result.keys;
                self.catalog
                    .call(move |c| c.round_done(&n, rows, pending.0, pending.1, kick))
                    .await
                    .map_err(|e| (render(&e), true))?;
                if result.keys > 0 || result.truncates > 0 {
                    info!(sync = %name, keys = result.keys, rows = result.rows, chunks = result.chunks,
                          ms = started.elapsed().as_millis() as u64, "round applied");
                }
            }
            if *self.stop.borrow() {
                return Ok(());
            }
            self.wait_for_work(&mut session, kick).await;
            if *self.stop.borrow() {
                return Ok(());
            }
        }
    }

    async fn load(
        &self,
        def: &SyncDef,
    ) -> Result<(DbSpec, DbSpec, Vec<TableName>, Option<crate::engine::Snapshot>), (String, bool)> {
        let Some((src, dst)) = def.one_way() else {
            return Err((
                format!("sync '{}' needs one source and one target database", def.name),
                false,
            ));
        };
        let (name, src, dst) = (def.name.clone(), src.to_string(), dst.to_string());
        self.catalog
            .call(move |c| {
                let src_spec = c.require_db(&src)?;
                let dst_spec = c.require_db(&dst)?;
                let tables = c
                    .relations(&name)?
                    .into_iter()
                    .map(|t| TableName {
                        schema: t.schema,
                        name: t.name,
                    })
                    .collect();
                let position = c.position(&name, &src)?;
                Ok((src_spec, dst_spec, tables, position))
            })
            .await
            .map_err(|e: crate::catalog::CatalogError| (render(&e), true))
    }

    /// Waits for a notification, a kick, the poll timer or a stop request.
    async fn wait_for_work(&mut self, session: &mut Session, kick_done: i64) {
        let deadline = Instant::now() + self.poll;
        loop {
            if self.def.borrow().kick_seq > kick_done || *self.stop.borrow() {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            tokio::select! {
                n = session.notifications.recv() => {
                    if n.is_none() {
                        return; // connection closed: the next round reconnects
                    }
                    sleep(COALESCE).await;
                    while session.notifications.try_recv().is_ok() {}
                    return;
                }
                _ = self.def.changed() => {}
                _ = self.stop.changed() => return,
                _ = sleep(left) => return,
            }
        }
    }

    /// Sleeps `d`, ending early on a kick or a stop request.
    async fn wait_or_kick(&mut self, d: Duration) {
        let kick = self.def.borrow().kick_seq;
        let _ = timeout(d, async {
            loop {
                tokio::select! {
                    r = self.def.changed() => if r.is_err() || self.def.borrow().kick_seq > kick { return },
                    _ = self.stop.changed() => return,
                }
            }
        })
        .await;
    }
}
