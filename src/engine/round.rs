//! Rule 5 of DESIGN.md: a round is atomic per side, and retried as a whole.
//!
//! A round is first tried as one transaction per side over every table
//! ([`super::atomic`]). When the backlog is over the budget, the round races the
//! application, or a table fails on its own, it runs in chunks instead: it fixes each source's batch by that source's snapshot `S_round` (rule
//! 1), then applies the batches table by table in key-range chunks of bounded size,
//! each one transaction per side (rule 2), both directions at once. Only when every chunk
//! is done does the caller store the snapshots as the new positions. A crash anywhere
//! repeats at most one chunk, which state-based apply makes harmless, and never starts
//! a backlog over, because finished chunks' deltas are gone.

use super::apply::{apply_chunk, ChunkError};
use super::batch::{batch_filter, current_snapshot};
use super::conflict::{Conflict, Strategy};
use super::park::{self, Parked};
use super::plan::TablePlan;
use super::snapshot::Snapshot;
use super::{atomic, sequences, truncate, EngineError, Side};
use crate::pg::deadline::DEFAULT_STALL_TIMEOUT;
use crate::pg::introspect::TableName;
use crate::pg::{within, DbError};

/// Tries of a chunk that races application writes before it is cut smaller, and of
/// a one-key chunk before that key is left for the next round.
const RACE_TRIES: u32 = 2;
/// How much smaller a racing chunk gets.
const RACE_SHRINK: i64 = 8;

/// Whether a chunk lost a race with an application write (serialization failure,
/// deadlock, or a row lock held past the round's lock timeout): retrying it on fresh
/// snapshots is the fix.
pub(super) fn is_race(error: &EngineError) -> bool {
    matches!(error, EngineError::Db(e) if matches!(e.code().map(|c| c.code()), Some("40001" | "40P01" | "55P03")))
}

/// Whether an error belongs to one table (its SQL, its rows, its privileges) rather
/// than to the session or the server: such an error stops that table for this round
/// while the tables after it go on. Connection loss, resource exhaustion, operator
/// intervention and internal errors still end the round.
fn is_table_scoped(error: &EngineError) -> bool {
    match error {
        EngineError::Db(DbError::Query { source, .. }) => source.code().is_some_and(|c| {
            !matches!(&c.code()[..2], "08" | "40" | "53" | "57" | "58" | "XX")
                && c.code() != crate::capture::syncs::FENCED
        }),
        _ => false,
    }
}

/// A table a round left out because applying it failed; it is tried again next round.
#[derive(Debug, Clone)]
pub struct TableStop {
    /// `schema.table`.
    pub table: String,
    /// The error, rendered.
    pub error: String,
}

/// Default number of keys applied per chunk.
pub const DEFAULT_CHUNK_KEYS: i64 = 20_000;

/// Default bound on the bytes of rows one chunk sends (by the tables' row estimates).
pub const DEFAULT_CHUNK_BYTES: i64 = 32 << 20;

/// How rounds run.
#[derive(Debug, Clone, Copy)]
pub struct RoundOptions {
    /// Try the round as one transaction per side first (rule 5).
    pub atomic: bool,
    pub chunk_keys: i64,
    /// Bytes of rows per chunk, by each table's estimated row size.
    pub chunk_bytes: i64,
    pub strategy: Strategy,
    /// How long one step (a chunk, a snapshot) may wait for an answer.
    pub stall: std::time::Duration,
}

impl Default for RoundOptions {
    fn default() -> Self {
        RoundOptions {
            atomic: true,
            chunk_keys: DEFAULT_CHUNK_KEYS,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            strategy: Strategy::Latest,
            stall: DEFAULT_STALL_TIMEOUT,
        }
    }
}

/// What a finished (or stopped) round did.
#[derive(Debug, Clone, Default)]
pub struct RoundResult {
    /// The snapshots to store as the new positions of the source sides; `None` when
    /// the round was stopped before its last chunk.
    pub positions: Option<[Option<Snapshot>; 2]>,
    /// Rows written into the first and into the second database.
    pub rows_into: [u64; 2],
    /// Keys sent from the first and from the second database.
    pub keys_from: [u64; 2],
    pub chunks: u64,
    pub truncates: u64,
    pub conflicts: Vec<Conflict>,
    /// Keys set aside this round because their rows could not be applied.
    pub parked: Vec<Parked>,
    /// Tables left out of this round by an error of their own.
    pub stopped: Vec<TableStop>,
    /// Keys left for the next round, their deltas kept: the application wrote them
    /// on the receiver during every try.
    pub deferred: u64,
    /// The round was one transaction per side (rule 5); false when a backlog, a race
    /// or a bad row made it run in chunks, each atomic on its own.
    pub consistent: bool,
    /// The round as one transaction raced the application's writes and went in
    /// chunks: under such contention the next rounds start in chunks.
    pub raced: bool,
}

impl RoundResult {
    /// Whether the round moved anything.
    pub fn did_work(&self) -> bool {
        self.keys_from.iter().sum::<u64>() > 0 || self.truncates > 0 || !self.parked.is_empty()
    }
}

/// Runs one round between the two sides from their stored `positions`: the changes
/// of `tables`, then (one way) `sequences`. `stop` is asked between chunks; when it
/// says yes the round ends without new positions.
pub async fn run_round(
    sides: &mut [Side; 2],
    tables: &[TablePlan],
    sequences: &[TableName],
    positions: &[Option<Snapshot>; 2],
    opts: &RoundOptions,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<RoundResult, EngineError> {
    let stall = opts.stall;
    let both = crate::pg::deadline::either(&sides[0].db, &sides[1].db);
    let mut result = RoundResult::default();
    if opts.atomic {
        match run_atomic(sides, tables, sequences, positions, opts).await? {
            Ok(done) => return Ok(done),
            Err(why) => result.raced = matches!(why, InChunks::Raced),
        }
    }
    let mut snapshots: [Option<Snapshot>; 2] = [None, None];
    for i in 0..2 {
        if sides[i].source {
            let (side, position) = (&sides[i], positions[i].as_ref());
            let snapshot = current_snapshot(&side.client, &side.db, position);
            snapshots[i] = Some(within(stall, &side.db, "taking the round's snapshot", snapshot).await?);
        }
    }
    let batches = snapshots.clone().map(|s| s.map(|s| batch_filter(&s)));
    for (i, batch) in batches.iter().enumerate() {
        if let Some(batch) = batch {
            let [a, b] = sides;
            let (from, to) = if i == 0 { (a, &*b) } else { (b, &*a) };
            let truncates = truncate::apply_truncates(from, to, tables, batch);
            result.truncates += within(stall, &both, "applying truncates", truncates).await?;
        }
    }
    for table in tables {
        let max = table.max_chunk_keys(opts.chunk_keys, opts.chunk_bytes);
        let mut limit = max;
        let mut tries = 0u32;
        let mut after: Option<Vec<String>> = None;
        let what = format!("applying a chunk of {}", table.table.display_name());
        loop {
            let chunk = apply_chunk(sides, table, &batches, after.as_deref(), limit, opts.strategy);
            match within(stall, &both, &what, chunk).await {
                Ok(None) => break,
                Ok(Some(chunk)) => {
                    for i in 0..2 {
                        result.rows_into[i] += chunk.rows_into[i];
                        result.keys_from[i] += chunk.keys_from[i];
                    }
                    result.chunks += 1;
                    result.conflicts.extend(chunk.conflicts);
                    tracing::debug!(table = %table.table.display_name(), keys = ?chunk.keys_from, "chunk applied");
                    limit = (limit * 2).min(max);
                    tries = 0;
                    if stop() {
                        return Ok(result);
                    }
                }
                Err(ChunkError {
                    last_key: Some(key),
                    error,
                }) if park::is_row_error(&error) => {
                    if limit > 1 {
                        limit = (limit / 2).max(1);
                        continue;
                    }
                    let parked = within(
                        stall,
                        &both,
                        "parking a row",
                        park::park(sides, table, &key, &error),
                    )
                    .await?;
                    tracing::warn!(table = %table.table.display_name(), key = ?parked.key,
                                   error = %parked.error, "row parked");
                    result.parked.push(parked);
                    limit = max;
                }
                Err(e) if is_race(&e.error) => {
                    // An application wrote a row of this chunk after the chunk's
                    // snapshot: decide again on fresh snapshots. A chunk that keeps
                    // losing is cut smaller, so the keys nobody is writing go through;
                    // a single key that keeps losing waits for the next round, its
                    // deltas kept, instead of stopping the sync.
                    tries += 1;
                    tracing::debug!(table = %table.table.display_name(), tries, limit, "chunk raced a write");
                    if tries < RACE_TRIES {
                        tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(tries))).await;
                    } else if limit > 1 {
                        limit = (limit / RACE_SHRINK).max(1);
                        tries = 0;
                    } else if let Some(key) = e.last_key {
                        tracing::info!(table = %table.table.display_name(), key = ?key,
                                       "key written during every try: left for the next round");
                        after = Some(key);
                        result.deferred += 1;
                        limit = max;
                        tries = 0;
                    } else {
                        return Err(e.error);
                    }
                }
                Err(e) if is_table_scoped(&e.error) => {
                    let error = crate::pg::error::render(&e.error);
                    tracing::warn!(table = %table.table.display_name(), %error, "table stopped for this round");
                    result.stopped.push(TableStop {
                        table: table.table.display_name(),
                        error,
                    });
                    break;
                }
                Err(ChunkError {
                    error: EngineError::Db(error @ DbError::Stalled { .. }),
                    ..
                }) => {
                    // Rows too wide for the estimate (or a network outage): the
                    // session is dropped, and the retry cuts this table's chunks.
                    return Err(EngineError::ChunkStalled {
                        table: table.table.display_name(),
                        keys: limit,
                        error,
                    });
                }
                Err(e) => return Err(e.error),
            }
        }
    }
    carry_sequences(sides, sequences, stall, &both).await?;
    result.positions = Some(snapshots);
    Ok(result)
}

/// Why a round goes in chunks.
enum InChunks {
    /// Over the budget, a bad row not isolated, or a table's own error.
    Needed,
    /// It raced the application's writes to its rows.
    Raced,
}

/// The round as one transaction per side, or why it is to run in chunks.
async fn run_atomic(
    sides: &mut [Side; 2],
    tables: &[TablePlan],
    sequences: &[TableName],
    positions: &[Option<Snapshot>; 2],
    opts: &RoundOptions,
) -> Result<Result<RoundResult, InChunks>, EngineError> {
    let both = crate::pg::deadline::either(&sides[0].db, &sides[1].db);
    let budget = atomic::Budget {
        keys: opts.chunk_keys,
        bytes: opts.chunk_bytes,
    };
    // Boxed: the whole round's state would make every caller's future large.
    let attempt = Box::pin(atomic::run(sides, tables, positions, budget, opts.strategy));
    match within(opts.stall, &both, "applying the round", attempt).await {
        Ok(Some(round)) => {
            carry_sequences(sides, sequences, opts.stall, &both).await?;
            Ok(Ok(RoundResult {
                positions: Some(round.snapshots),
                rows_into: round.applied.rows_into,
                keys_from: round.applied.keys_from,
                chunks: 1,
                truncates: round.truncates,
                conflicts: round.applied.conflicts,
                parked: round.parked,
                deferred: round.deferred,
                consistent: true,
                ..RoundResult::default()
            }))
        }
        Ok(None) => Ok(Err(InChunks::Needed)), // a backlog
        // The application wrote a row of the round after its snapshot: chunks race
        // in smaller windows, and defer a key that keeps losing.
        Err(e) if is_race(&e) => Ok(Err(InChunks::Raced)),
        // Chunks narrow a bad row or a failing table down.
        Err(e) if park::is_row_error(&e) || is_table_scoped(&e) => {
            tracing::debug!(error = %crate::pg::error::render(&e), "round applied in chunks");
            Ok(Err(InChunks::Needed))
        }
        Err(EngineError::Db(error @ DbError::Stalled { .. })) => Err(EngineError::RoundStalled { error }),
        Err(e) => Err(e),
    }
}

/// One way, moves every sequence of the source forward on the target.
async fn carry_sequences(
    sides: &mut [Side; 2],
    sequences: &[TableName],
    stall: std::time::Duration,
    both: &str,
) -> Result<(), EngineError> {
    let [first, second] = sides;
    let what = "carrying sequences";
    match (first.source, second.source) {
        (true, false) => within(stall, both, what, sequences::carry(first, second, sequences)).await?,
        (false, true) => within(stall, both, what, sequences::carry(second, first, sequences)).await?,
        _ => 0,
    };
    Ok(())
}

/// Changes captured on `side` and not yet applied, and the age in seconds of the oldest.
pub async fn pending(side: &Side, tables: &[TablePlan]) -> Result<(i64, f64), DbError> {
    if tables.is_empty() {
        return Ok((0, 0.0));
    }
    let parts: Vec<String> = tables
        .iter()
        .map(|t| format!("select belt_changed_at from {}", t.delta_sql()))
        .collect();
    let sql = format!(
        "select count(*), coalesce(extract(epoch from clock_timestamp() - min(belt_changed_at))::float8, 0) \
         from ({}) d",
        parts.join(" union all ")
    );
    let error = |e| DbError::query(&side.db, "count pending changes", e);
    let statement = side.prepared.get(&side.client, &sql).await.map_err(error)?;
    let row = side.client.query_one(&statement, &[]).await.map_err(error)?;
    Ok((row.get(0), row.get(1)))
}
