//! `beltctl setup NAME|GROUP --wait` and `beltctl status --watch`: follow syncs
//! through schema, copy, indexes and catch-up, with a progress bar per sync on a
//! terminal and plain lines otherwise. The daemon does the work; these only watch
//! the catalog, so a dropped terminal loses nothing.

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::CliError;
use crate::catalog::{Catalog, CatalogError, CopyState, SyncState, SyncStatus};

/// Arguments of `beltctl setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// A sync, or a group of syncs.
    pub name: String,
    /// Wait until every sync replicates, showing progress.
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait with --wait (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
    /// With --wait: set up at most this many syncs of the group at once, starting the
    /// next as one finishes (belt-syncd's `setup_jobs` bounds it too).
    #[arg(long, requires = "wait")]
    pub jobs: Option<usize>,
}

/// Syncs still to be handed to the daemon, and how many may be set up at once.
pub struct Queue {
    waiting: VecDeque<String>,
    jobs: usize,
}

impl Queue {
    /// Hands the next syncs to the daemon while fewer than `jobs` are being set up.
    fn start_more(
        &mut self,
        catalog: &mut Catalog,
        statuses: &[(String, SyncStatus)],
    ) -> Result<(), CliError> {
        let busy = statuses
            .iter()
            .filter(|(_, s)| s.copy_state != CopyState::Added && !s.is_replicating())
            .count();
        for _ in busy..self.jobs {
            let Some(next) = self.waiting.pop_front() else {
                break;
            };
            catalog.request_setup(&next)?;
        }
        Ok(())
    }
}

/// The syncs a name stands for: the sync of that name, or every sync of that group.
pub fn resolve_targets(catalog: &Catalog, name: &str) -> Result<Vec<String>, CliError> {
    if catalog.sync(name)?.is_some() {
        return Ok(vec![name.to_string()]);
    }
    let group: Vec<String> = catalog
        .syncs()?
        .into_iter()
        .filter(|s| s.group.as_deref() == Some(name))
        .map(|s| s.name)
        .collect();
    if group.is_empty() {
        return Err(CatalogError::NotFound {
            kind: "sync",
            name: format!("{name}' or group '{name}"),
        }
        .into());
    }
    Ok(group)
}

/// Hands the syncs of `name` to the daemon for setup (resuming paused ones) and, with
/// `--wait`, follows them until they replicate.
pub async fn setup(catalog: &mut Catalog, args: SetupArgs) -> Result<ExitCode, CliError> {
    let syncs = resolve_targets(catalog, &args.name)?;
    let mut waiting = VecDeque::new();
    for s in &syncs {
        if catalog.require_sync(s)?.paused {
            catalog.set_paused(s, false)?;
        }
        if catalog.status(s)?.copy_state == CopyState::Added {
            waiting.push_back(s.clone());
        }
    }
    if !args.wait {
        for s in &waiting {
            catalog.request_setup(s)?;
        }
        println!(
            "belt-syncd sets up {}; follow it with `beltctl status {} --watch`",
            syncs.join(", "),
            args.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    let limit = (args.timeout > 0).then(|| Duration::from_secs(args.timeout));
    let mut queue = Queue {
        waiting,
        jobs: args.jobs.unwrap_or(usize::MAX).max(1),
    };
    watch(catalog, &syncs, limit, Some(&mut queue)).await
}

/// Redraws the syncs' progress; with a setup `queue`, hands syncs to the daemon as
/// room frees up and returns once every one replicates, else runs until interrupted.
/// Fails when a sync fails.
pub async fn watch(
    catalog: &mut Catalog,
    syncs: &[String],
    limit: Option<Duration>,
    mut queue: Option<&mut Queue>,
) -> Result<ExitCode, CliError> {
    let started = Instant::now();
    let mut view = View::new(syncs, std::io::stderr().is_terminal());
    loop {
        let mut statuses = Vec::new();
        for s in syncs {
            let status = catalog.status(s)?;
            if status.state == SyncState::Failed {
                view.finish();
                return Err(CliError::Failed(format!(
                    "sync '{s}' failed: {}",
                    status.last_error.unwrap_or_default()
                )));
            }
            view.update(s, &status);
            statuses.push((s.clone(), status));
        }
        let all_done = statuses.iter().all(|(_, s)| s.is_replicating());
        if let Some(q) = queue.as_deref_mut() {
            q.start_more(catalog, &statuses)?;
        }
        if queue.is_some() && all_done {
            view.finish();
            println!("{} replicating", syncs.join(", "));
            return Ok(ExitCode::SUCCESS);
        }
        if limit.is_some_and(|l| started.elapsed() > l) {
            view.finish();
            return Err(CliError::Failed(format!(
                "not done within {}s; see `beltctl status`",
                started.elapsed().as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Progress of several syncs: bars on a terminal, a line per change otherwise.
struct View {
    bars: Option<(MultiProgress, HashMap<String, ProgressBar>)>,
    last_line: HashMap<String, (String, Instant)>,
    rates: HashMap<String, (i64, Instant)>,
}

impl View {
    fn new(syncs: &[String], terminal: bool) -> View {
        let bars = terminal.then(|| {
            let multi = MultiProgress::new();
            let style = ProgressStyle::with_template("{prefix:>12} {wide_bar} {pos}/{len} rows {msg}")
                .expect("valid template");
            let bars = syncs
                .iter()
                .map(|s| {
                    let bar = multi.add(
                        ProgressBar::new(0)
                            .with_style(style.clone())
                            .with_prefix(s.clone()),
                    );
                    (s.clone(), bar)
                })
                .collect();
            (multi, bars)
        });
        View {
            bars,
            last_line: HashMap::new(),
            rates: HashMap::new(),
        }
    }

    /// Rows per second since the previous sample, and the time left at that rate.
    fn rate(&mut self, sync: &str, status: &SyncStatus) -> (f64, Option<u64>) {
        let now = Instant::now();
        let (prev_rows, prev_at) = self
            .rates
            .insert(sync.to_string(), (status.copy_rows, now))
            .unwrap_or((status.copy_rows, now));
        let secs = now.duration_since(prev_at).as_secs_f64();
        let rate = if secs > 0.0 {
            (status.copy_rows - prev_rows) as f64 / secs
        } else {
            0.0
        };
        let left = status.copy_total - status.copy_rows;
        let eta = (rate > 0.0 && left > 0).then(|| (left as f64 / rate) as u64);
        (rate, eta)
    }

    fn update(&mut self, sync: &str, status: &SyncStatus) {
        let (rate, eta) = self.rate(sync, status);
        let phase = status.phase();
        let mut msg = format!("{phase}, {:.0} rows/s", rate);
        if let Some(eta) = eta {
            msg.push_str(&format!(", ETA {eta}s"));
        }
        for d in &status.directions {
            msg.push_str(&format!(
                ", {} → {}: {} pending, lag {:.1}s",
                d.from, d.to, d.pending_rows, d.lag_seconds
            ));
        }
        if let Some((_, bars)) = &self.bars {
            let bar = &bars[sync];
            bar.set_length(status.copy_total.max(status.copy_rows) as u64);
            bar.set_position(status.copy_rows as u64);
            bar.set_message(msg);
            return;
        }
        // Plain output: a line when the phase changes, else every 5 seconds.
        let due = match self.last_line.get(sync) {
            Some((p, at)) => *p != phase || at.elapsed() >= Duration::from_secs(5),
            None => true,
        };
        if due {
            eprintln!(
                "{sync}: {msg} ({}/{} rows copied)",
                status.copy_rows, status.copy_total
            );
            self.last_line.insert(sync.to_string(), (phase, Instant::now()));
        }
    }

    fn finish(&mut self) {
        if let Some((_, bars)) = &self.bars {
            for bar in bars.values() {
                bar.finish();
            }
        }
    }
}
