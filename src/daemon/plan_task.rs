//! The plan file the daemon applies itself (`belt-syncd --plan FILE` or `plan:`): at
//! start and on every SIGHUP, so that a pod whose volume is empty rebuilds its catalog
//! and a plan edit (a new sync, a sync moved to another shard) takes effect without
//! `beltctl`. A sync that cannot be applied yet (its database unreachable) is tried
//! again every [`RETRY_EVERY`] until it is.

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::plan::{Outcome, Plan};

/// How long to wait before applying a plan again whose syncs did not all apply.
pub const RETRY_EVERY: Duration = Duration::from_secs(10);

/// Applies the plan of the current config now, again on every config reload, and
/// again after [`RETRY_EVERY`] while a sync of it failed.
pub async fn run(mut configs: watch::Receiver<Config>) {
    loop {
        let config = configs.borrow_and_update().clone();
        let complete = match &config.plan {
            Some(path) => apply_once(&config, path).await,
            None => true,
        };
        let reloaded = configs.changed();
        if complete {
            if reloaded.await.is_err() {
                return;
            }
        } else {
            tokio::select! {
                r = reloaded => if r.is_err() { return },
                _ = tokio::time::sleep(RETRY_EVERY) => {}
            }
        }
    }
}

/// Applies `path` once; whether every entry applied (a bad file counts as applied:
/// it waits for the next SIGHUP).
async fn apply_once(config: &Config, path: &Path) -> bool {
    let shown = path.display().to_string();
    let shard = match config.shard() {
        Ok(s) => s,
        Err(e) => {
            error!(plan = %shown, error = %e, "plan not applied");
            return true;
        }
    };
    // The catalog's SQLite connection is not Sync and the apply holds it across its
    // awaits: it runs on a blocking thread of its own, driving its I/O on the runtime.
    let (catalog_path, plan_path) = (config.catalog.clone(), path.to_path_buf());
    let runtime = tokio::runtime::Handle::current();
    let applied = tokio::task::spawn_blocking(move || {
        runtime.block_on(async {
            let plan = Plan::load(&plan_path)?;
            let mut catalog = Catalog::open(&catalog_path)?;
            plan.apply(&mut catalog, shard).await
        })
    })
    .await
    .expect("plan task panicked");
    match applied {
        Ok(done) => {
            let mut complete = true;
            for d in done {
                match &d.outcome {
                    Outcome::Unchanged => {}
                    Outcome::Failed(message) => {
                        complete = false;
                        warn!(plan = %shown, kind = d.kind, name = %d.name, error = %message, retry_in = ?RETRY_EVERY, "plan entry not applied");
                    }
                    outcome => info!(plan = %shown, kind = d.kind, name = %d.name, %outcome, "plan applied"),
                }
            }
            complete
        }
        Err(e) => {
            error!(plan = %shown, error = %crate::pg::error::render(&e), "plan not applied");
            true
        }
    }
}
