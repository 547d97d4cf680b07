//! The migration workflow around replication: checks before it starts, and the
//! cutover and failback themselves (`switch`).

pub mod add_sync;
pub mod always;
pub mod constraints;
pub mod logins;
pub mod precheck;
pub mod privileges;
pub mod roles;
pub mod switch;
pub mod sync_text;

/// Why a migration step (adding a sync, a cutover or failback) could not run, or
/// which of its checks stopped it.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error(transparent)]
    Db(#[from] crate::pg::DbError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    Tables(#[from] crate::tables::TableError),
    /// The sync asked for cannot be (databases, roles, strategy).
    #[error("{0}")]
    Definition(String),
    /// A gate of a cutover or failback found what stops it.
    #[error("{0}")]
    Gate(String),
}
