//! One sync's life in the daemon: connect, wait for a change, run a round, report,
//! and on failure report and retry with backoff, without touching other syncs.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, timeout, Instant};
use tracing::{debug, info, warn};

use super::error::SyncError;
use super::session::{Idle, Session};
use super::setup::Setup;
use super::{partitions, pickup};
use crate::catalog::{CatalogHandle, CopyState, DirectionStatus, RoundRecord, SyncDef, SyncState};
use crate::config::Config;
use crate::engine::clock::offset_ms;
use crate::engine::drift;
use crate::engine::round::pending;
use crate::engine::TablePlan;
use crate::engine::{run_round, Conflict, EngineError, RoundOptions, RoundResult, Snapshot, Strategy};
use crate::pg::error::render;
use crate::pg::introspect::TableName;
use crate::pg::{budget, within, DbError, DbSpec};

/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An idle sync runs a full round at least this often (sequences carried, drift
/// checked, new tables picked up); in between, it only looks for changes.
const IDLE_ROUND_EVERY: Duration = Duration::from_secs(300);
/// After this long idle, a one-way sync closes its receiver's connection, and looks
/// for changes only every [`IDLE_POLL_FACTOR`] poll intervals (a notification still
/// wakes it at once; the look covers a lost one).
const PARK_AFTER: Duration = Duration::from_secs(10);
/// How often a long-idle sync looks for new tables and partitions.
const IDLE_PICKUP_INTERVAL: Duration = Duration::from_secs(30);
/// How many poll intervals apart a long-idle sync looks for changes.
const IDLE_POLL_FACTOR: u32 = 10;

/// What ended a wait for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Notified,
    /// A kick or a stop request.
    Kicked,
    /// The poll timer: nothing announced itself.
    Timer,
}

/// How often a daemon standing by tries for a sync's lock (`takeover: true`).
const STANDBY_POLL: Duration = Duration::from_secs(2);
/// How often a sync looks for partitions, and with `--tables all` tables, created since.
const PICKUP_INTERVAL: Duration = Duration::from_secs(5);
/// Rounds applied in chunks after a round as one transaction stalled.
const CHUNKED_AFTER_STALL: u32 = 10;
/// Rounds applied in chunks after a round as one transaction raced the application;
/// doubled after each further round that races, up to [`MAX_CHUNKED_AFTER_RACE`],
/// and back to this after one that commits as one transaction.
pub(super) const CHUNKED_AFTER_RACE: u32 = 8;
const MAX_CHUNKED_AFTER_RACE: u32 = 256;
/// Pause before a round retries keys it left for later (the application was writing
/// them). After a notification the pause is `round_interval_ms`, so that a burst of
/// commits makes one round; changes that came in while a round ran have waited that
/// long already, and the pause is what is left of it after the round.
const COALESCE: Duration = Duration::from_millis(20);
/// Under load, how often a round counts the changes still pending and reads the
/// clocks for the status: counting scans every delta table, and at 50 rounds a
/// second it cost the source as much as some of the rounds' own statements.
const MEASURE_EVERY: Duration = Duration::from_secs(1);

/// Everything a sync task needs, handed over by the supervisor.
pub struct SyncTask {
    pub catalog: CatalogHandle,
    /// The sync's definition; the supervisor publishes changes (kicks) here.
    pub def: watch::Receiver<SyncDef>,
    /// Set to true to stop after the current chunk.
    pub stop: watch::Receiver<bool>,
    /// The configuration as it was when the task started; a reloaded file reaches
    /// the sync when its task restarts (a role or strategy change, a daemon restart).
    pub config: Config,
    /// Set once a round succeeds, so the next failure starts its backoff afresh.
    pub progressed: bool,
    /// Tables whose chunk stalled, with the most keys their chunks may hold now; kept
    /// across reconnects, relaxed (doubled) after each round that succeeds.
    pub stall_caps: std::collections::HashMap<String, i64>,
    /// Rounds still to run in chunks because a round as one transaction stalled or
    /// raced the application.
    pub chunked_rounds: u32,
    /// How many rounds go in chunks after the next race: under contention that
    /// does not let up, rounds as one transaction are tried ever more rarely.
    pub race_backoff: u32,
    /// Shared by every sync task: how many syncs may be set up at once.
    pub setups: std::sync::Arc<tokio::sync::Semaphore>,
    /// Since when the sync has found nothing to do (across the full rounds an idle
    /// sync still runs); `None` while it has work.
    pub idle_since: Option<Instant>,
    /// The last counts of pending changes and the clock offset, which rounds under
    /// load report again for up to [`MEASURE_EVERY`].
    pub measured: Option<Measured>,
}

/// Pending changes and the clock offset as a round measured them.
#[derive(Debug, Clone)]
pub struct Measured {
    at: Instant,
    /// The kick the measuring round started after.
    kick: i64,
    directions: Vec<DirectionStatus>,
    offset_ms: f64,
}

/// A sync's definition as read from the catalog for one connection.
struct Loaded {
    specs: [DbSpec; 2],
    sources: [bool; 2],
    tables: Vec<TableName>,
    positions: [Option<Snapshot>; 2],
}

impl SyncTask {
    /// After a round that went through, lets the tables cut after a stall take twice
    /// as many keys per chunk, up to `chunk_keys`.
    fn relax_stall_caps(&mut self, plans: &mut [TablePlan]) {
        let full = self.config.chunk_keys;
        self.stall_caps.retain(|_, cap| {
            *cap = cap.saturating_mul(2);
            *cap < full
        });
        self.apply_stall_caps(plans);
    }

    /// Gives each plan the cap its table has after a stall, if any.
    fn apply_stall_caps(&self, plans: &mut [TablePlan]) {
        for plan in plans {
            plan.stall_cap = self.stall_caps.get(&plan.table.display_name()).copied();
        }
    }

    /// Runs until stopped. Errors are reported in the catalog, never returned.
    pub async fn run(mut self) {
        let name = self.def.borrow().name.clone();
        let mut backoff = Duration::from_millis(500);
        while !*self.stop.borrow() {
            match Box::pin(self.run_connected(&name)).await {
                // Stopped, or reconnecting to take in tables picked up.
                Ok(()) => continue,
                Err(e @ SyncError::Standby { .. }) => {
                    // Not a failure: another daemon runs the sync. Try for its lock
                    // again soon (a killed holder's lock goes with its connection),
                    // or, with takeover off, only when kicked.
                    let (error, n) = (e.render(), name.clone());
                    debug!(sync = %name, %error, "standing by");
                    let _ = self
                        .catalog
                        .call(move |c| c.set_state(&n, SyncState::Standby, Some(&error)))
                        .await;
                    if self.config.takeover {
                        self.wait_or_kick(STANDBY_POLL).await;
                    } else {
                        self.wait_or_kick(Duration::MAX).await;
                    }
                }
                Err(e) => {
                    let (error, transient) = (e.render(), e.is_transient());
                    crate::api::metrics::error(&name);
                    if std::mem::take(&mut self.progressed) {
                        backoff = Duration::from_millis(500);
                    }
                    let state = if transient {
                        SyncState::Retrying
                    } else {
                        SyncState::Failed
                    };
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
        let _ = self
            .catalog
            .call(move |c| c.set_state(&n, SyncState::Stopped, None))
            .await;
        info!(sync = %name, "sync stopped");
    }

    /// Connects and runs rounds until stopped (Ok) or an error (its text and whether
    /// it is transient).
    async fn run_connected(&mut self, name: &str) -> Result<(), SyncError> {
        let def = self.def.borrow().clone();
        let loaded = self.load(&def).await?;
        let strategy = def.conflict;
        let mut opts = RoundOptions {
            atomic: true,
            chunk_keys: self.config.chunk_keys,
            chunk_bytes: self.config.chunk_bytes,
            strategy,
            stall: self.config.stall_timeout(),
        };
        let mut positions = loaded.positions.clone();
        let setup = Setup {
            catalog: &self.catalog,
            sync: name,
            specs: &loaded.specs,
            sources: loaded.sources,
            stop: &self.stop,
            config: &self.config,
        };
        // Setups (schema, copy, indexes) run at most `setup_jobs` at a time.
        let permit = if def.copy != CopyState::Done {
            let n = name.to_string();
            let _ = self
                .catalog
                .call(move |c| c.set_state(&n, SyncState::Queued, None))
                .await;
            let mut stop = self.stop.clone();
            tokio::select! {
                permit = self.setups.clone().acquire_owned() => Some(permit.expect("semaphore open")),
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        } else {
            None
        };
        let copy = setup.before_connect(def.copy).await?;
        let stall = self.config.stall_timeout();
        let both = crate::pg::deadline::either(&loaded.specs[0].name, &loaded.specs[1].name);
        let open = Session::open(
            name,
            [&loaded.specs[0], &loaded.specs[1]],
            loaded.sources,
            &loaded.tables,
            stall,
            // Three of the longest waits between the idle loop's looks, which renew it.
            self.config.poll_interval() * IDLE_POLL_FACTOR * 3,
        );
        let mut session = within(stall, &both, "connecting and installing capture", open).await?;
        info!(sync = %name, tables = session.plans.len(), "sync connected");
        self.apply_stall_caps(&mut session.plans);
        if copy != CopyState::Done && !setup.after_connect(copy, &session).await? {
            return Ok(()); // stopped during the copy; it resumes from its checkpoints
        }
        drop(permit);
        let n = name.to_string();
        let _ = self
            .catalog
            .call(move |c| c.set_state(&n, SyncState::Replicating, None))
            .await;
        let first = crate::catalog::first_source(loaded.sources);
        // A one-way sync's receiver, whose connection it may give back when idle.
        let receiver_server = match loaded.sources {
            [true, false] => Some(budget::server_of(&loaded.specs[1])),
            [false, true] => Some(budget::server_of(&loaded.specs[0])),
            _ => None,
        };
        let mut next_pickup = Instant::now();
        loop {
            if Instant::now() >= next_pickup {
                next_pickup = Instant::now() + PICKUP_INTERVAL;
                let follow = partitions::follow(name, &mut session);
                within(stall, &both, "following partitions", follow).await?;
                if let Some(schema) = def.tables_all.as_deref() {
                    let pick =
                        pickup::pick_up(&self.catalog, name, &mut session, &loaded.specs, first, schema);
                    let picked = within(stall, &both, "picking up new tables", pick).await?;
                    if picked > 0 {
                        return Ok(()); // reconnect: the new tables join the rounds
                    }
                }
            }
            opts.atomic = self.config.atomic_rounds && self.chunked_rounds == 0;
            let kick = self.def.borrow().kick_seq;
            let stop = self.stop.clone();
            let started = Instant::now();
            let check = drift::check(&session.sides, &mut session.plans);
            let drifts = within(stall, &both, "reading the tables' columns", check).await?;
            let plans: Vec<TablePlan> = session
                .plans
                .iter()
                .filter(|p| !drifts.iter().any(|d| d.table == p.table.display_name()))
                .cloned()
                .collect();
            let round = run_round(
                &mut session.sides,
                &plans,
                &session.sequences,
                &positions,
                &opts,
                &|| *stop.borrow(),
            )
            .await;
            let result = match round {
                Ok(r) => r,
                Err(EngineError::ConflictAbort { conflicts }) => {
                    self.record_conflicts(name, &session, strategy, conflicts.clone())
                        .await;
                    return Err(EngineError::ConflictAbort { conflicts }.into());
                }
                Err(e @ EngineError::RoundStalled { .. }) => {
                    warn!(sync = %name, rounds = CHUNKED_AFTER_STALL, "round stalled: the next rounds go in chunks");
                    self.chunked_rounds = CHUNKED_AFTER_STALL;
                    self.progressed = true;
                    return Err(e.into());
                }
                Err(e @ EngineError::ChunkStalled { .. }) => {
                    if let EngineError::ChunkStalled { table, keys, .. } = &e {
                        warn!(sync = %name, %table, keys, "chunk stalled: cut for the retry");
                        self.stall_caps.insert(table.clone(), (keys / 8).max(1));
                    }
                    self.progressed = true; // a smaller chunk is a new try, not the same one
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            };
            self.relax_stall_caps(&mut session.plans);
            self.chunked_rounds = self.chunked_rounds.saturating_sub(1);
            if result.raced {
                // Contention on the same rows: the next rounds go straight to chunks
                // instead of losing the race as one transaction first.
                self.chunked_rounds = self.chunked_rounds.max(self.race_backoff);
                self.race_backoff = (self.race_backoff * 2).min(MAX_CHUNKED_AFTER_RACE);
            } else if result.consistent {
                self.race_backoff = CHUNKED_AFTER_RACE;
            }
            let conflicts = result.conflicts.len();
            if conflicts > 0 {
                self.record_conflicts(name, &session, strategy, result.conflicts.clone())
                    .await;
            }
            if !result.parked.is_empty() {
                let (n, parked) = (name.to_string(), result.parked.clone());
                self.catalog.call(move |c| c.record_parked(&n, &parked)).await?;
            }
            let Some(new_positions) = result.positions.clone() else {
                return Ok(()); // stopped between chunks
            };
            let measured = self.measure(&session, kick, &result, conflicts);
            let record = within(stall, &both, "counting pending changes", measured).await?;
            let directions = record.directions.clone();
            let (n, dbs) = (
                name.to_string(),
                [session.sides[0].db.clone(), session.sides[1].db.clone()],
            );
            let stored: Vec<(String, Snapshot)> = dbs
                .into_iter()
                .zip(new_positions.clone())
                .filter_map(|(db, p)| Some((db, p?)))
                .collect();
            self.catalog
                .call(move |c| c.round_stored(&n, &stored, &record))
                .await?;
            positions = new_positions;
            self.progressed = true;
            if !drifts.is_empty() || !result.stopped.is_empty() {
                let stopped = result.stopped.iter().map(|t| {
                    format!(
                        "table {} stopped: {}; belt tries it again every round while the other tables go on",
                        t.table, t.error
                    )
                });
                let message = drifts
                    .iter()
                    .map(|d| d.message.clone())
                    .chain(stopped)
                    .collect::<Vec<_>>()
                    .join("; ");
                warn!(sync = %name, %message, "tables left out of the round");
                crate::api::metrics::error(name);
                let n = name.to_string();
                let _ = self
                    .catalog
                    .call(move |c| c.set_state(&n, SyncState::Replicating, Some(&message)))
                    .await;
            }
            crate::api::metrics::round(
                name,
                started.elapsed(),
                [
                    (session.sides[0].db.clone(), result.rows_into[0]),
                    (session.sides[1].db.clone(), result.rows_into[1]),
                ],
                &directions,
                conflicts,
                result.parked.len(),
            );
            if result.did_work() {
                self.idle_since = None;
                info!(sync = %name, keys = ?result.keys_from, rows = ?result.rows_into, chunks = result.chunks,
                      conflicts, ms = started.elapsed().as_millis() as u64, "round applied");
            }
            if *self.stop.borrow() {
                return Ok(());
            }
            if result.deferred > 0 {
                // Their deltas are still there: try them again soon, notified or not.
                self.wait_or_kick(COALESCE).await;
                continue;
            }
            let busy = result.did_work();
            let listening = within(stall, &both, "listening for changes", session.listen(!busy)).await?;
            if busy {
                // Changes are streaming in: the next round starts `round_interval_ms`
                // after this one did (at once when this one took longer), without
                // waiting for a notification (the sources do not LISTEN).
                let gap = self.config.round_interval();
                self.wait_or_kick(gap.saturating_sub(started.elapsed())).await;
                if *self.stop.borrow() {
                    return Ok(());
                }
                if receiver_server.as_deref().is_some_and(budget::contended) {
                    // Boxed here and below: the session moves into the idle loop,
                    // whose future would make this one large.
                    match Box::pin(self.idle(session, &loaded.specs, kick, true)).await? {
                        Some(s) => session = s,
                        None => return Ok(()),
                    }
                }
                continue;
            }
            if listening && within(stall, &both, "looking for changes", session.has_changes()).await? {
                continue; // committed while nobody listened
            }
            let wake = self
                .wait_for_work(
                    &mut session.notifications,
                    kick,
                    started.elapsed(),
                    self.config.poll_interval(),
                )
                .await;
            if *self.stop.borrow() {
                return Ok(());
            }
            // Other work waits for the receiver's server: give its connection back
            // between rounds, and queue for it again when changes come.
            let make_room = receiver_server.as_deref().is_some_and(budget::contended);
            let idle = wake == Wake::Timer && result.stopped.is_empty() && drifts.is_empty();
            if make_room || idle {
                match Box::pin(self.idle(session, &loaded.specs, kick, make_room)).await? {
                    Some(s) => session = s,
                    None => return Ok(()),
                }
            }
        }
    }

    /// While the sync has nothing to do: one cheap look for changes per poll interval
    /// instead of a round, and after [`PARK_AFTER`] a one-way sync closes its
    /// receiver's connection (one connection per idle sync). Returns the session,
    /// connected again, when there is work (a notification, changes found, a kick)
    /// or [`IDLE_ROUND_EVERY`] has passed (sequences, drift and new tables are looked
    /// at by rounds); `None` when stopped.
    async fn idle(
        &mut self,
        mut session: Session,
        specs: &[DbSpec; 2],
        kick: i64,
        park_now: bool,
    ) -> Result<Option<Session>, SyncError> {
        let stall = self.config.stall_timeout();
        let both = crate::pg::deadline::either(&specs[0].name, &specs[1].name);
        // Only a notification ends the waits below early; the first look for
        // changes finds what committed while the sources did not listen.
        within(stall, &both, "listening for changes", session.listen(true)).await?;
        let since = Instant::now();
        let idle_since = *self.idle_since.get_or_insert(since);
        let name = self.def.borrow().name.clone();
        let mut next_structure = since + PICKUP_INTERVAL;
        let mut state = Idle::Awake(session);
        let mut parkable = true;
        loop {
            let long_idle = idle_since.elapsed() >= PARK_AFTER;
            if parkable && (park_now || long_idle) {
                if let Idle::Awake(s) = state {
                    state = s.park(specs, stall);
                    parkable = false;
                    if matches!(state, Idle::Parked(_)) {
                        debug!(park_now, "receiver's connection closed");
                    }
                }
            }
            if within(stall, &both, "looking for changes", state.has_changes()).await?
                || since.elapsed() >= IDLE_ROUND_EVERY
            {
                break;
            }
            if Instant::now() >= next_structure {
                // New tables and partitions announce themselves to no trigger.
                next_structure = Instant::now()
                    + if long_idle {
                        IDLE_PICKUP_INTERVAL
                    } else {
                        PICKUP_INTERVAL
                    };
                let look = self.structure_changed(&name, &mut state);
                if within(stall, &both, "looking for new tables and partitions", look).await? {
                    break;
                }
            }
            let notifications = match &mut state {
                Idle::Awake(s) => &mut s.notifications,
                Idle::Parked(p) => &mut p.notifications,
            };
            let poll = if long_idle {
                self.config.poll_interval() * IDLE_POLL_FACTOR
            } else {
                self.config.poll_interval()
            };
            let wake = self
                .wait_for_work(notifications, kick, Duration::ZERO, poll)
                .await;
            if *self.stop.borrow() {
                return Ok(None);
            }
            if wake != Wake::Timer {
                break;
            }
        }
        Ok(Some(match state {
            Idle::Awake(s) => s,
            Idle::Parked(p) => {
                budget::wait_for_room(&budget::server_of(p.receiver_spec())).await;
                within(stall, &both, "reconnecting the receiver", p.unpark()).await?
            }
        }))
    }

    /// Whether an idle sync's sources have a table it should pick up (`--tables
    /// all`) or partitions it should follow: a round is due then.
    async fn structure_changed(&self, name: &str, state: &mut Idle) -> Result<bool, SyncError> {
        let follows = self.def.borrow().tables_all.clone();
        let (mut sources, plans) = state.sources();
        if let (Some(schema), Some(first)) = (follows, sources.first()) {
            if pickup::has_new(&self.catalog, name, first, &schema).await? {
                return Ok(true);
            }
        }
        for side in sources.iter_mut() {
            if partitions::changed(side, plans).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Pending rows per direction and the clock offset after a round. A round that
    /// moved changes reports the last counts again while they are younger than
    /// [`MEASURE_EVERY`]; a round that moved nothing, or the first after a kick,
    /// always counts, so that `pending_rows` is exact when a drain reads it.
    async fn measure(
        &mut self,
        session: &Session,
        kick: i64,
        result: &RoundResult,
        conflicts: usize,
    ) -> Result<RoundRecord, DbError> {
        let fresh = self
            .measured
            .as_ref()
            .filter(|m| result.did_work() && m.kick >= kick && m.at.elapsed() < MEASURE_EVERY);
        let measured = match fresh {
            Some(m) => m.clone(),
            None => {
                let m = self.measure_now(session, kick).await?;
                self.measured = Some(m.clone());
                m
            }
        };
        Ok(RoundRecord {
            rows: result.rows_into.iter().sum(),
            directions: measured.directions,
            kick,
            clock_offset_ms: Some(measured.offset_ms),
            conflicts,
            consistent: result.consistent,
        })
    }

    /// Counts the pending changes of each source and reads the clock offset.
    async fn measure_now(&self, session: &Session, kick: i64) -> Result<Measured, DbError> {
        let mut directions = Vec::new();
        for (i, side) in session.sides.iter().enumerate().filter(|(_, s)| s.source) {
            let (pending_rows, lag_seconds) = pending(side, &session.plans).await?;
            directions.push(DirectionStatus {
                from: side.db.clone(),
                to: session.sides[1 - i].db.clone(),
                pending_rows,
                lag_seconds,
            });
        }
        let offset = offset_ms(&session.sides).await?;
        if offset.abs() > self.config.max_clock_offset_ms {
            warn!(
                offset_ms = offset,
                bound_ms = self.config.max_clock_offset_ms,
                "clocks of the two databases differ by more than max_clock_offset_ms: \
                   the later clock wins conflicts; fix NTP on the servers"
            );
        }
        Ok(Measured {
            at: Instant::now(),
            kick,
            directions,
            offset_ms: offset,
        })
    }

    async fn record_conflicts(
        &self,
        name: &str,
        session: &Session,
        strategy: Strategy,
        conflicts: Vec<Conflict>,
    ) {
        for c in &conflicts {
            info!(sync = %name, table = %c.table, key = %c.key, first_changed_at = %c.first_changed_at,
                  second_changed_at = %c.second_changed_at, winner = ?c.winner, %strategy, "conflict");
        }
        let (n, dbs) = (
            name.to_string(),
            [session.sides[0].db.clone(), session.sides[1].db.clone()],
        );
        let strategy = strategy.to_string();
        if let Err(e) = self
            .catalog
            .call(move |c| c.record_conflicts(&n, [&dbs[0], &dbs[1]], &strategy, &conflicts))
            .await
        {
            warn!(sync = %name, error = %render(&e), "cannot record conflicts");
        }
    }

    async fn load(&self, def: &SyncDef) -> Result<Loaded, SyncError> {
        let def = def.clone();
        self.catalog
            .call(move |c| {
                let pair = c.db_pair(&def)?;
                let name = def.name;
                let tables = c
                    .relations(&name)?
                    .into_iter()
                    .filter(|t| t.key.is_some())
                    .map(|t| TableName {
                        schema: t.schema,
                        name: t.name,
                    })
                    .collect();
                let [a, b] = &pair.members;
                let positions = [c.position(&name, &a.db)?, c.position(&name, &b.db)?];
                Ok::<_, crate::catalog::CatalogError>(Loaded {
                    sources: pair.sources(),
                    specs: pair.specs,
                    tables,
                    positions,
                })
            })
            .await
            .map_err(SyncError::from)
    }

    /// Waits for a notification, a kick, the poll timer or a stop request. `round`:
    /// how long the round before took; notifications that came in meanwhile have
    /// waited up to that long already.
    async fn wait_for_work(
        &mut self,
        notifications: &mut mpsc::UnboundedReceiver<String>,
        kick_done: i64,
        round: Duration,
        poll: Duration,
    ) -> Wake {
        let gap = self.config.round_interval();
        if notifications.try_recv().is_ok() {
            sleep(gap.saturating_sub(round)).await;
            while notifications.try_recv().is_ok() {}
            return Wake::Notified;
        }
        let deadline = Instant::now() + poll;
        loop {
            if self.def.borrow().kick_seq > kick_done || *self.stop.borrow() {
                return Wake::Kicked;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Wake::Timer;
            }
            tokio::select! {
                n = notifications.recv() => {
                    if n.is_none() {
                        return Wake::Notified; // connection closed: the next round reconnects
                    }
                    sleep(gap).await;
                    while notifications.try_recv().is_ok() {}
                    return Wake::Notified;
                }
                _ = self.def.changed() => {}
                _ = self.stop.changed() => return Wake::Kicked,
                _ = sleep(left) => return Wake::Timer,
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
