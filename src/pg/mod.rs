//! Talking to PostgreSQL: connection settings, sessions, catalog queries, quoting.

pub mod binaries;
pub mod budget;
pub mod connect;
pub(crate) mod dbspec;
pub mod deadline;
pub mod error;
pub mod introspect;
pub(crate) mod keyed;
pub(crate) mod password;
pub(crate) mod pgpass;
pub(crate) mod pipe;
pub(crate) mod prepared;
pub(crate) mod quote;
pub(crate) mod tls;

pub use connect::{connect, connect_listening};
pub use dbspec::DbSpec;
pub use deadline::within;
pub use error::DbError;
pub use keyed::KeyedTable;
