//! A sync's initial copy over `copy_jobs` connection pairs: tables, and parts of
//! large integer-keyed tables, copied in parallel; each chunk checkpointed in the
//! catalog, so that a restarted daemon resumes at the next unfinished chunk.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_postgres::Client;
use tracing::info;

use super::error::SyncError;
use crate::catalog::{CatalogHandle, CopyPart};
use crate::copy::{copy_chunk, estimate_rows, split_points, End, Range};
use crate::engine::echo::prepare_receiver;
use crate::pg::KeyedTable;
use crate::pg::{connect, DbSpec};

/// Tables estimated above this many chunks are split into parts.
const SPLIT_ABOVE_CHUNKS: i64 = 4;

/// Copies the tables of a sync, in parallel, from their checkpoints on.
pub struct CopyJob {
    pub catalog: CatalogHandle,
    pub sync: String,
    pub from: DbSpec,
    pub to: DbSpec,
    pub tables: Vec<KeyedTable>,
    pub jobs: usize,
    pub chunk_rows: i64,
    /// How long one chunk may wait for a silent database.
    pub stall: std::time::Duration,
    pub stop: watch::Receiver<bool>,
    /// The sync's fence on the receiving database: every chunk's transaction there
    /// starts with it.
    pub fence: String,
}

/// One part of one table, still to copy.
struct Unit {
    table: KeyedTable,
    part: CopyPart,
}

impl CopyJob {
    /// Copies every part not copied yet; `Ok(false)` when stopped before the end.
    pub async fn run(self) -> Result<bool, SyncError> {
        let job = Arc::new(self);
        let queue = Arc::new(Mutex::new(job.plan().await?));
        let mut workers = Vec::new();
        for _ in 0..job.jobs.max(1) {
            let (job, queue) = (job.clone(), queue.clone());
            workers.push(tokio::spawn(async move { job.work(&queue).await }));
        }
        let mut result = Ok(());
        for w in workers {
            match w.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(e) => result = Err(SyncError::from(e)),
            }
        }
        result?;
        let stopped = *job.stop.borrow();
        Ok(!stopped)
    }

    /// Plans each table's parts (once; a restart reuses the plan) and returns the
    /// parts still to copy.
    async fn plan(&self) -> Result<VecDeque<Unit>, SyncError> {
        let from = connect(&self.from).await?;
        let mut todo = VecDeque::new();
        let (mut done, mut estimated) = (0, 0);
        for table in &self.tables {
            let (sync, schema, name) = (
                self.sync.clone(),
                table.table.schema.clone(),
                table.table.name.clone(),
            );
            let mut parts = self
                .catalog
                .call(move |c| c.copy_parts(&sync, &schema, &name))
                .await?;
            if parts.is_empty() {
                parts = self.split(&from, table).await?;
                let (sync, schema, name, planned) = (
                    self.sync.clone(),
                    table.table.schema.clone(),
                    table.table.name.clone(),
                    parts.clone(),
                );
                self.catalog
                    .call(move |c| c.plan_table_copy(&sync, &schema, &name, &planned))
                    .await?;
            }
            for p in &parts {
                done += p.rows.max(0) as u64;
                estimated += p.total.max(p.rows).max(0) as u64;
            }
            todo.extend(parts.into_iter().filter(|p| !p.done).map(|part| Unit {
                table: table.clone(),
                part,
            }));
        }
        crate::api::metrics::copy_planned(&self.sync, done, estimated);
        Ok(todo)
    }

    /// Cuts a large integer-keyed table into one part per job.
    async fn split(&self, from: &Client, table: &KeyedTable) -> Result<Vec<CopyPart>, SyncError> {
        let total = estimate_rows(from, &self.from.name, table).await?;
        let points = if total > SPLIT_ABOVE_CHUNKS * self.chunk_rows {
            split_points(from, &self.from.name, table, self.jobs).await?
        } else {
            Vec::new()
        };
        let count = points.len() as i64 + 1;
        let mut bounds: Vec<Option<Vec<String>>> = vec![None];
        bounds.extend(points.into_iter().map(Some));
        bounds.push(None);
        Ok(bounds
            .windows(2)
            .enumerate()
            .map(|(i, w)| CopyPart {
                part: i as i64,
                last_key: w[0].clone(),
                upper_key: w[1].clone(),
                rows: 0,
                total: total / count,
                done: false,
            })
            .collect())
    }

    async fn work(&self, queue: &Mutex<VecDeque<Unit>>) -> Result<(), SyncError> {
        let mut from = connect(&self.from).await?;
        let mut to = connect(&self.to).await?;
        prepare_receiver(&to, &self.to.name).await?;
        loop {
            let Some(unit) = queue.lock().expect("queue lock").pop_front() else {
                return Ok(());
            };
            if !self.copy_part(&mut from, &mut to, unit).await? {
                return Ok(());
            }
        }
    }

    /// Copies one part from its checkpoint on; `Ok(false)` when stopped.
    async fn copy_part(&self, from: &mut Client, to: &mut Client, unit: Unit) -> Result<bool, SyncError> {
        let Unit { table, part } = unit;
        let mut after = part.last_key.clone();
        info!(sync = %self.sync, table = %table.table.display_name(), part = part.part, resume_after = ?after, "copying");
        loop {
            if *self.stop.borrow() {
                return Ok(false);
            }
            let range = Range {
                after: after.as_deref(),
                upper: part.upper_key.as_deref(),
            };
            let what = format!("copying {}", table.table.display_name());
            let both = crate::pg::deadline::either(&self.from.name, &self.to.name);
            let chunk = copy_chunk(
                End {
                    db: &self.from.name,
                    client: from,
                    fence: "",
                },
                End {
                    db: &self.to.name,
                    client: to,
                    fence: &self.fence,
                },
                &table,
                range,
                self.chunk_rows,
            );
            let copied = crate::pg::within(self.stall, &both, &what, chunk).await?;
            crate::api::metrics::copied(&self.sync, copied.rows);
            let done = copied.last_key.is_none();
            let checkpoint = if done {
                after.clone()
            } else {
                copied.last_key.clone()
            };
            let (sync, schema, name, number) = (
                self.sync.clone(),
                table.table.schema.clone(),
                table.table.name.clone(),
                part.part,
            );
            let key = checkpoint.clone();
            self.catalog
                .call(move |c| {
                    c.checkpoint_copy(&sync, &schema, &name, number, key.as_deref(), copied.rows, done)
                })
                .await?;
            if done {
                return Ok(true);
            }
            after = checkpoint;
        }
    }
}
