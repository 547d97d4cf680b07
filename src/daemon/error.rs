//! One error type for everything a sync task does — connect, set up, copy, follow,
//! run rounds — and the one place that decides whether trying again may help. The
//! error keeps its chain for the log; it becomes text only when stored in the
//! catalog.

use crate::catalog::CatalogError;
use crate::engine::EngineError;
use crate::pg::DbError;
use crate::schema::SchemaError;
use crate::tables::TableError;

/// Why a sync task's connection, setup or round failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A table of the sync cannot be replicated as it stands (no key, …).
    #[error(transparent)]
    Tables(#[from] TableError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The daemon's own catalog (SQLite busy, a database the sync names removed
    /// meanwhile): tried again.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Another daemon runs the sync: it holds the sync's advisory lock on `db`.
    #[error("sync '{sync}' runs in another belt-syncd ({owner}, holding its lock on database '{db}'); this one stands by and takes over when that one stops")]
    Standby { sync: String, db: String, owner: String },
    /// A copy worker panicked or was cancelled.
    #[error("copy worker failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

impl SyncError {
    /// Whether the task should try again after a backoff (`retrying`) rather than
    /// wait for the operator (`failed`). The SQLSTATE decision itself is
    /// [`crate::pg::error::is_transient_pg`].
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Db(e) => e.is_transient(),
            SyncError::Engine(e) => e.is_transient(),
            SyncError::Tables(TableError::Db(e)) => e.is_transient(),
            SyncError::Tables(_) => false,
            SyncError::Schema(e) => e.is_transient(),
            // The sync's definition cannot run as it stands: the operator fixes it.
            SyncError::Catalog(CatalogError::InvalidSync { .. }) => false,
            SyncError::Catalog(_) | SyncError::Worker(_) | SyncError::Standby { .. } => true,
        }
    }

    /// The error and its causes on one line, as stored in the catalog's status.
    pub fn render(&self) -> String {
        crate::pg::error::render(self)
    }
}
