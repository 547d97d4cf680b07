//! The local catalog: databases, syncs, their tables, positions and status, in SQLite.
//!
//! Positions live here, so a restarted daemon resumes exactly where it stopped.
//! The file is opened in WAL mode so that beltctl can read and write it while the
//! daemon runs; inside the daemon one thread owns the connection ([`CatalogHandle`]).

mod actor;
mod copying;
mod logins;
mod model;
mod records;
mod states;
mod status;
mod store;

pub use actor::CatalogHandle;
pub use copying::CopyPart;
pub use model::{
    first_source, ConflictRecord, DbPair, DirectionStatus, Member, ParkedRecord, StatusReport, SyncDef,
    SyncStatus,
};
pub use records::CONFLICTS_KEPT;
pub use states::{CopyState, Role, SyncState, UnknownState};
pub use status::RoundRecord;
pub use store::Catalog;

/// A catalog operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {path}: cannot {context}")]
    Sql {
        path: String,
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("no {kind} named '{name}' in the catalog; see `beltctl list {kind}s`")]
    NotFound { kind: &'static str, name: String },
    #[error("a {kind} named '{name}' already exists; remove it first or pick another name")]
    Exists { kind: &'static str, name: String },
    #[error(
        "table {table} of database '{db}' is already replicated from there by sync '{sync}': \
         a table's changes on one database can feed only one sync (its delta table is \
         emptied as it is applied); leave the table out with --tables"
    )]
    SharedCapture { table: String, db: String, sync: String },
    /// The sync's members cannot make a sync (`beltctl update sync` fixes it).
    #[error("sync '{sync}': {problem}")]
    InvalidSync { sync: String, problem: &'static str },
    #[error("database '{db}' is used by sync '{sync}'; remove the sync first")]
    InUse { db: String, sync: String },
    #[error("catalog {path} has schema version {found}, newer than this belt ({supported}); upgrade belt")]
    TooNew {
        path: String,
        found: i64,
        supported: i64,
    },
}
