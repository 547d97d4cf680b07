//! Talking to PostgreSQL: connection settings, sessions, catalog queries, quoting.

pub mod binaries;
pub mod connect;
pub mod dbspec;
pub mod deadline;
pub mod error;
pub mod introspect;
pub mod keyed;
pub mod pgpass;
pub mod pipe;
pub mod quote;
pub mod tls;

pub use connect::{connect, connect_listening};
pub use dbspec::DbSpec;
pub use deadline::within;
pub use error::DbError;
pub use keyed::KeyedTable;
