//! Drives a sync's initial copy inside the daemon (rule 6 lives in `crate::copy`):
//! tables in parallel over `copy_jobs` connection pairs, each chunk checkpointed in
//! the catalog, so that a restarted daemon resumes at the next unfinished chunk.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::info;

use crate::catalog::CatalogHandle;
use crate::copy::{copy_chunk, estimate_rows, End};
use crate::engine::echo::prepare_receiver;
use crate::engine::TablePlan;
use crate::pg::error::render;
use crate::pg::{connect, DbError, DbSpec};

/// A failure: its text and whether retrying may help.
pub type Failure = (String, bool);

fn fail(e: impl std::error::Error + 'static, transient: bool) -> Failure {
    (render(&e), transient)
}

/// Everything the copy needs.
pub struct CopyJob {
    pub catalog: CatalogHandle,
    pub sync: String,
    pub from: DbSpec,
    pub to: DbSpec,
    pub tables: Vec<TablePlan>,
    pub jobs: usize,
    pub chunk_rows: i64,
    pub stop: watch::Receiver<bool>,
}

impl CopyJob {
    /// Copies every table not copied yet; `Ok(false)` when stopped before the end.
    pub async fn run(self) -> Result<bool, Failure> {
        let job = Arc::new(self);
        let queue = Arc::new(Mutex::new(job.prepare().await?));
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
                Err(e) => result = Err((format!("copy worker failed: {e}"), true)),
            }
        }
        result?;
        let stopped = *job.stop.borrow();
        Ok(!stopped)
    }

    /// Registers every table with its size estimate; returns those still to copy.
    async fn prepare(&self) -> Result<VecDeque<TablePlan>, Failure> {
        let from = connect(&self.from).await.map_err(|e| fail(e, true))?;
        let mut todo = VecDeque::new();
        for table in &self.tables {
            let total = estimate_rows(&from, &self.from.name, table)
                .await
                .map_err(|e| fail(e, true))?;
            let (sync, schema, name) = (
                self.sync.clone(),
                table.table.schema.clone(),
                table.table.name.clone(),
            );
            let progress = self
                .catalog
                .call(move |c| {
                    c.start_table_copy(&sync, &schema, &name, total)?;
                    c.copy_progress(&sync, &schema, &name)
                })
                .await
                .map_err(|e| fail(e, true))?;
            if !progress.is_some_and(|p| p.done) {
                todo.push_back(table.clone());
            }
        }
        Ok(todo)
    }

    async fn work(&self, queue: &Mutex<VecDeque<TablePlan>>) -> Result<(), Failure> {
        let mut from = connect(&self.from).await.map_err(|e| fail(e, true))?;
        let mut to = connect(&self.to).await.map_err(|e| fail(e, true))?;
        prepare_receiver(&to, &self.to.name).await.map_err(|e: DbError| {
            let t = e.is_transient();
            fail(e, t)
        })?;
        loop {
            let Some(table) = queue.lock().expect("queue lock").pop_front() else {
                return Ok(());
            };
            if !self.copy_table(&mut from, &mut to, &table).await? {
                return Ok(());
            }
        }
    }

    /// Copies one table from its checkpoint on; `Ok(false)` when stopped.
    async fn copy_table(
        &self,
        from: &mut tokio_postgres::Client,
        to: &mut tokio_postgres::Client,
        table: &TablePlan,
    ) -> Result<bool, Failure> {
        let (sync, schema, name) = (
            self.sync.clone(),
            table.table.schema.clone(),
            table.table.name.clone(),
        );
        let progress = self
            .catalog
            .call(move |c| c.copy_progress(&sync, &schema, &name))
            .await
            .map_err(|e| fail(e, true))?;
        let mut after = progress.and_then(|p| p.last_key);
        info!(sync = %self.sync, table = %table.table.display_name(), resume_after = ?after, "copying table");
        loop {
            if *self.stop.borrow() {
                return Ok(false);
            }
            let copied = copy_chunk(
                End {
                    db: &self.from.name,
                    client: from,
                },
                End {
                    db: &self.to.name,
                    client: to,
                },
                table,
                after.as_deref(),
                self.chunk_rows,
            )
            .await
            .map_err(|e| {
                let t = e.is_transient();
                fail(e, t)
            })?;
            let (sync, schema, name) = (
                self.sync.clone(),
                table.table.schema.clone(),
                table.table.name.clone(),
            );
            let key = copied.last_key.clone();
            self.catalog
                .call(move |c| c.checkpoint_copy(&sync, &schema, &name, key.as_deref(), copied.rows))
                .await
                .map_err(|e| fail(e, true))?;
            match copied.last_key {
                Some(k) => after = Some(k),
                None => return Ok(true),
            }
        }
    }
}
