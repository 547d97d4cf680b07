//! belt-syncd: runs every active sync of the catalog, each in its own named task.
//!
//! The supervisor re-reads the catalog twice a second: it starts tasks for syncs
//! that are resumed or whose setup was requested (`beltctl setup`), stops tasks of
//! paused or removed ones, and forwards kicks. A task that ends without being
//! stopped (a panic) is reported in the sync's status and started again after a
//! growing delay ([`restarts`]). On
//! SIGTERM or SIGINT every task finishes the chunk it is applying (a round is never
//! dropped mid-transaction) and the daemon exits 0.

mod copy_job;
mod error;
mod notify;
mod partitions;
mod pickup;
mod plan_task;
mod restarts;
pub mod session;
mod setup;
mod sync_task;

use std::collections::HashMap;
use std::time::Duration;

use std::sync::Arc;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{error, info, info_span, Instrument};

use crate::api;
use crate::catalog::{Catalog, CatalogError, CatalogHandle, CopyState, SyncDef, SyncState};
use crate::config::Config;
pub use error::SyncError;
use notify::Notifier;
use restarts::Restarts;
use sync_task::SyncTask;

/// How often the supervisor re-reads the catalog.
const SUPERVISE_EVERY: Duration = Duration::from_millis(500);

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Listen(#[from] api::ListenError),
    #[error("config: listen: {0}")]
    Config(String),
    #[error("plan: {0}")]
    Plan(String),
}

struct Running {
    def: watch::Sender<SyncDef>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    started: tokio::time::Instant,
}

/// Runs the daemon until SIGTERM or SIGINT, under systemd's notify protocol when
/// `$NOTIFY_SOCKET` is set. SIGHUP re-reads the config file (`config_path`): new
/// values apply to syncs started from then on; a bad file is logged and ignored.
/// `plan` (from `--plan`) replaces the config's `plan:`, then and at every reload;
/// the plan is applied at start and on every SIGHUP.
pub async fn run(
    mut config: Config,
    config_path: Option<std::path::PathBuf>,
    plan: Option<std::path::PathBuf>,
) -> Result<(), DaemonError> {
    config.plan = plan.clone().or(config.plan);
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    if let Some(plan) = &config.plan {
        // A plan that cannot be read or checked stops the start: better a pod that
        // crash-loops naming the line than one that silently runs nothing.
        let shard = config.shard().map_err(|e| DaemonError::Plan(e.to_string()))?;
        crate::plan::Plan::load(plan)
            .and_then(|p| p.check(shard).map(drop))
            .map_err(|e| DaemonError::Plan(crate::pg::error::render(&e)))?;
    }
    let (reload_tx, reload_rx) = watch::channel(config);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match Config::load(config_path.as_deref()) {
                Ok(mut c) => {
                    c.plan = plan.clone().or(c.plan);
                    info!("config reloaded");
                    let _ = reload_tx.send(c);
                }
                Err(e) => error!(error = %e, "config not reloaded"),
            }
        }
    });
    let signalled = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    supervise(reload_rx, signalled, Notifier::from_env()).await
}

/// Runs the daemon until `shutdown` completes; every sync finishes its current chunk.
pub async fn run_until(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    let (_keep, configs) = watch::channel(config);
    supervise(configs, shutdown, Notifier::from_env()).await
}

async fn supervise(
    configs: watch::Receiver<Config>,
    shutdown: impl std::future::Future<Output = ()>,
    mut notifier: Notifier,
) -> Result<(), DaemonError> {
    let config = configs.borrow().clone();
    let catalog = CatalogHandle::spawn(Catalog::open(&config.catalog)?);
    let listen = api::Listen::parse(&config.listen).map_err(DaemonError::Config)?;
    let listener = api::bind(&listen).await?;
    let api_task = tokio::spawn(api::serve(
        listener,
        api::ApiState {
            catalog: catalog.clone(),
            metrics: api::metrics::install(),
        },
    ));
    let shard = config.shard().map_err(|e| DaemonError::Plan(e.to_string()))?;
    crate::pg::budget::set_limit(config.max_connections_per_server);
    info!(catalog = %config.catalog.display(), listen = %config.listen, shard = ?shard, "belt-syncd started");
    let plans = tokio::spawn(plan_task::run(configs.clone()));
    notifier.send("READY=1");
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut restarts = Restarts::default();
    let setups = Arc::new(Semaphore::new(config.setup_jobs));
    let tick = notifier
        .interval()
        .map_or(SUPERVISE_EVERY, |w| w.min(SUPERVISE_EVERY));
    tokio::pin!(shutdown);
    loop {
        let config = configs.borrow().clone();
        match catalog.call(|c| c.syncs()).await {
            Ok(syncs) => {
                reconcile(&config, &setups, &catalog, &mut running, &mut restarts, syncs).await;
                notifier.pet_if_due();
            }
            Err(e) => error!(error = %crate::pg::error::render(&e), "cannot read catalog"),
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = &mut shutdown => break,
        }
    }
    notifier.send("STOPPING=1");
    info!(syncs = running.len(), "stopping: finishing current chunks");
    for r in running.values() {
        let _ = r.stop.send(true);
    }
    for (_, r) in running {
        let _ = r.task.await;
    }
    api_task.abort();
    plans.abort();
    if let api::Listen::Unix(path) = &listen {
        let _ = std::fs::remove_file(path);
    }
    info!("belt-syncd stopped");
    Ok(())
}

async fn reconcile(
    config: &Config,
    setups: &Arc<Semaphore>,
    catalog: &CatalogHandle,
    running: &mut HashMap<String, Running>,
    restarts: &mut Restarts,
    syncs: Vec<SyncDef>,
) {
    let shard = config.shard().unwrap_or_else(|e| {
        error!(error = %e, "shard unknown: running no sync");
        Some(u32::MAX)
    });
    let elsewhere: HashMap<String, Option<u32>> = syncs
        .iter()
        .filter(|s| shard.is_some() && s.shard != shard)
        .map(|s| (s.name.clone(), s.shard))
        .collect();
    let wanted: HashMap<String, SyncDef> = syncs
        .into_iter()
        .filter(|s| !s.paused && s.copy != CopyState::Added)
        .filter(|s| !elsewhere.contains_key(&s.name))
        .map(|s| (s.name.clone(), s))
        .collect();
    let gone: Vec<String> = running
        .keys()
        .filter(|n| !wanted.contains_key(*n))
        .cloned()
        .collect();
    for name in gone {
        if let Some(r) = running.remove(&name) {
            let _ = r.stop.send(true);
            let _ = r.task.await;
            let n = name.clone();
            let _ = match elsewhere.get(&name) {
                Some(other) => {
                    let why = match other {
                        Some(s) => format!("the plan moved it to shard {s}; that daemon runs it"),
                        None => "the plan gives it no shard; no sharded daemon runs it".into(),
                    };
                    info!(sync = %name, %why, "sync task stopped");
                    catalog
                        .call(move |c| c.set_state(&n, SyncState::Stopped, Some(&why)))
                        .await
                }
                None => {
                    catalog
                        .call(move |c| c.set_state(&n, SyncState::Paused, None))
                        .await
                }
            };
        }
    }
    // A task runs until it is stopped: one that ended on its own panicked.
    let ended: Vec<String> = running
        .iter()
        .filter(|(_, r)| r.task.is_finished())
        .map(|(n, _)| n.clone())
        .collect();
    for name in ended {
        let r = running.remove(&name).expect("present");
        let ran = r.started.elapsed();
        let why = restarts::why(r.task.await);
        let (count, delay) = restarts.ended(&name, ran);
        error!(sync = %name, %why, restarts = count, retry_in = ?delay, "sync task ended");
        api::metrics::task_restart(&name);
        let (n, message) = (name.clone(), format!("{why}; started again in {delay:?}"));
        let _ = catalog
            .call(move |c| c.set_state(&n, SyncState::Retrying, Some(&message)))
            .await;
    }
    for (name, def) in wanted {
        if !running.contains_key(&name) && !restarts.may_start(&name) {
            continue;
        }
        if let Some(r) = running.get(&name) {
            let reconfigured = {
                let cur = r.def.borrow();
                cur.members != def.members || cur.conflict != def.conflict
            };
            if !reconfigured {
                r.def.send_if_modified(|cur| {
                    let changed = *cur != def;
                    *cur = def.clone();
                    changed
                });
                continue;
            }
            // New roles or strategy: finish the current chunk and reconnect.
            info!(sync = %name, "sync reconfigured: restarting its task");
            let r = running.remove(&name).expect("present");
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
        let (def_tx, def_rx) = watch::channel(def);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = SyncTask {
            catalog: catalog.clone(),
            def: def_rx,
            stop: stop_rx,
            config: config.clone(),
            progressed: false,
            stall_caps: Default::default(),
            chunked_rounds: 0,
            race_backoff: sync_task::CHUNKED_AFTER_RACE,
            setups: setups.clone(),
            idle_since: None,
            measured: None,
        };
        let handle = tokio::spawn(task.run().instrument(info_span!("sync", sync = %name)));
        info!(sync = %name, "sync task started");
        running.insert(
            name,
            Running {
                def: def_tx,
                stop: stop_tx,
                task: handle,
                started: tokio::time::Instant::now(),
            },
        );
    }
}
