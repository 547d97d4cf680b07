//! belt: move live PostgreSQL databases between servers with trigger-based
//! replication, and keep the old server in step so the move can be undone.
//!
//! `belt-syncd` (the daemon, [`daemon::run`]) and `beltctl` (the CLI, [`cli`]) are
//! thin wrappers around this library. DESIGN.md's correctness rules each live in one
//! module: rule 1 in [`engine::batch`], 2 in [`engine::apply`], 5 in
//! [`engine::round`], 7 in [`engine::sequences`], 9 in [`capture`].

mod api;
pub mod capture;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod copy;
pub mod daemon;
pub mod engine;
#[cfg(feature = "demo")]
pub mod local_cluster;
mod migrate;
pub mod pg;
pub mod plan;
pub mod schema;
mod tables;
mod verify;
