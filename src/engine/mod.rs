//! The replication engine: batches, apply, rounds (DESIGN.md rules 1, 2, 5, 7, 8).

pub mod apply;
pub mod batch;
mod pipe;
pub mod plan;
pub mod round;
pub mod sequences;
pub mod snapshot;
mod truncate;

pub use apply::Ends;
pub use plan::TablePlan;
pub use round::{run_round, RoundResult, DEFAULT_CHUNK_KEYS};
pub use snapshot::Snapshot;

use crate::pg::DbError;

/// Why a round failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// The source's transaction counter is behind the stored position.
    #[error("database '{db}' is behind the position belt stored (its next transaction id {current} is below {stored}): it was restored from a backup, failed over to a lagging replica, or lost its last transactions in a crash with synchronous_commit = off. belt stopped this sync rather than skip changes; compare the databases, then remove and re-add the sync")]
    SourceMoved { db: String, current: u64, stored: u64 },
}

impl EngineError {
    /// Whether the same round may succeed when tried again.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Db(e) => e.is_transient(),
            EngineError::SourceMoved { .. } => false,
        }
    }
}
