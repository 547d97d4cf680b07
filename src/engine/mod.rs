//! The replication engine: batches, apply, conflicts, rounds (DESIGN.md rules 1–5, 7, 8).

mod all_tables;
pub(crate) mod apply;
pub(crate) mod atomic;
pub(crate) mod batch;
pub(crate) mod clock;
pub(crate) mod conflict;
pub(crate) mod drift;
pub(crate) mod echo;
pub(crate) mod interleave;
pub(crate) mod park;
pub(crate) mod plan;
pub(crate) mod round;
pub(crate) mod sequences;
pub(crate) mod snapshot;
mod truncate;
pub(crate) mod vacuum;
pub(crate) mod width;

pub use conflict::{Conflict, ConflictKind, Strategy};
pub use plan::TablePlan;
pub use round::{run_round, RoundOptions, RoundResult, DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_KEYS};
pub use snapshot::Snapshot;

use tokio_postgres::Client;

use crate::pg::DbError;

/// One database of a sync, connected, as a round sees it.
pub struct Side {
    /// The operator's name for the database.
    pub db: String,
    pub client: Client,
    /// Whether changes are captured here and sent to the other side.
    pub source: bool,
    /// The statement every write transaction here starts with: the sync's fence
    /// (`capture::syncs::fence_sql`), so that a daemon that lost the sync to another
    /// fails instead of writing. Empty: unfenced (beltctl's own work, tests).
    pub fence: String,
    /// Rows purged from each delta table here since belt last vacuumed it.
    pub purged: vacuum::Purged,
    /// What rounds run on `client` every time, prepared once.
    pub prepared: crate::pg::prepared::Prepared,
    /// The temp tables' statements (`apply::temp_tables_sql`) of rounds that
    /// committed on `client`: those temp tables are there for the session's life, and
    /// an atomic round makes only the others.
    pub temps: std::collections::HashSet<String>,
}

impl Side {
    /// An unfenced side.
    pub fn new(db: String, client: Client, source: bool) -> Side {
        Side {
            db,
            client,
            source,
            fence: String::new(),
            purged: Default::default(),
            prepared: Default::default(),
            temps: Default::default(),
        }
    }
}

/// Why a round failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// The source's transaction counter is behind the stored position.
    #[error("database '{db}' is behind the position belt stored (its next transaction id {current} is below {stored}): it was restored from a backup, failed over to a lagging replica, or lost its last transactions in a crash with synchronous_commit = off. belt stopped this sync rather than skip changes; compare the databases, then remove and re-add the sync")]
    SourceMoved { db: String, current: u64, stored: u64 },
    /// A conflict under the `abort` strategy.
    #[error("conflict on {} key ({}) under strategy abort: the sync stopped; resolve it by hand (beltctl conflicts), then change --conflict or resume", .conflicts[0].table, .conflicts[0].key)]
    ConflictAbort { conflicts: Vec<Conflict> },
    /// A round applied as one transaction per side took longer than the stall limit
    /// (rows far wider than estimated); the next rounds go in chunks.
    #[error("{error} (the round as one transaction; the next rounds go in chunks)")]
    RoundStalled { error: DbError },
    /// A chunk of `table` took longer than the stall limit; the retry sends fewer keys.
    #[error(
        "{error} (a chunk of up to {keys} keys of {table}; the next try sends at most an eighth as many)"
    )]
    ChunkStalled {
        table: String,
        keys: i64,
        error: DbError,
    },
}

impl EngineError {
    /// Whether the same round may succeed when tried again.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Db(e) => e.is_transient(),
            EngineError::ChunkStalled { .. } | EngineError::RoundStalled { .. } => true,
            EngineError::SourceMoved { .. } | EngineError::ConflictAbort { .. } => false,
        }
    }
}
