//! beltctl: the administration CLI. One file per group of subcommands; each returns
//! what it prints as a struct so that `--json` and the human table come from one place.

mod db;
#[cfg(feature = "demo")]
mod demo;
mod logins;
mod output;
mod parked;
mod plan;
mod precheck;
mod setup;
mod switch;
mod sync;
mod teardown;
mod verify;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::catalog::{Catalog, CatalogError};
use crate::config::{Config, ConfigError};
use crate::pg::dbspec::DbSpecError;
use crate::pg::DbError;
use crate::tables::TableError;

/// Command-line interface of beltctl.
#[derive(Debug, Parser)]
#[command(
    name = "beltctl",
    version,
    about = "Administer belt: databases, syncs, rounds, status"
)]
pub struct Cli {
    /// Config file (YAML); defaults apply without one.
    #[arg(short, long, env = "BELT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// beltctl's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Define a database or a sync.
    #[command(subcommand)]
    Add(AddCommand),
    /// List databases, syncs or the tables of a sync.
    List {
        #[command(subcommand)]
        what: ListCommand,
    },
    /// Ask the daemon for a round now.
    Kick(watch::KickArgs),
    /// Show what the daemon last reported about one sync or all of them.
    Status(watch::StatusArgs),
    /// Stop replicating a sync until `resume` (its changes keep being captured).
    Pause { name: String },
    /// Resume a paused sync.
    Resume { name: String },
    /// Remove a sync or a database definition.
    #[command(subcommand)]
    Remove(RemoveCommand),
    /// Change a sync's roles (turn a direction on or off) without a re-copy.
    #[command(subcommand)]
    Update(UpdateCommand),
    /// Show the recent conflicts of a sync: table, key, both timestamps, winner.
    Conflicts(watch::ConflictsArgs),
    /// Re-queue the parked keys of a sync (rows that could not be applied).
    Retry { name: String },
    /// Declare databases and syncs from a YAML plan file; re-applying is a no-op.
    Apply(plan::ApplyArgs),
    /// Fence the application off one database: its login roles set to NOLOGIN
    /// (recorded, so that restore-logins gives back exactly those).
    RevokeLogins(logins::RevokeArgs),
    /// Give back the logins revoke-logins took, and only those.
    RestoreLogins(logins::RestoreArgs),
    /// Move the applications' writes to the sync's second database: fence, drain,
    /// sequences, key-less tables, verify, analyze, switch; back replication stays on.
    Cutover(switch::SwitchArgs),
    /// Move them back to the first database, through the same gates.
    Failback(switch::SwitchArgs),
    /// Stop a sync and remove everything belt installed for it on both databases.
    Teardown(teardown::TeardownArgs),
    /// Compare every table and sequence of a sync on both databases; exit 1 on any
    /// difference, naming tables and keys.
    Verify(verify::VerifyArgs),
    /// Check everything a sync (or a group) needs on both databases; exit 1 when
    /// something blocks it.
    Precheck(precheck::PrecheckArgs),
    /// Set up a sync or a group: schema, capture, copy, indexes, catch-up (done by
    /// belt-syncd); with --wait, follow it with progress bars.
    Setup(setup::SetupArgs),
    /// Run the whole story on two throwaway local clusters.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
}

/// `beltctl add …`
#[derive(Debug, Subcommand)]
pub enum AddCommand {
    /// Define a database: libpq keys (host port dbname user sslmode …) or a URI;
    /// the password comes from password_env=VAR, password_file=PATH or pgpass.
    Db(db::AddDbArgs),
    /// Define a sync between databases and check its tables on both.
    Sync(sync::AddSyncArgs),
}

/// `beltctl list …`
#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// Every database definition.
    Dbs {
        #[arg(long)]
        json: bool,
    },
    /// Every sync.
    Syncs {
        #[arg(long)]
        json: bool,
    },
    /// The tables of one sync.
    Tables {
        sync: String,
        #[arg(long)]
        json: bool,
    },
    /// The parked keys of one sync, with the database error.
    Parked {
        sync: String,
        #[arg(long)]
        json: bool,
    },
}

/// `beltctl update …`
#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Change the roles of a sync's databases.
    Sync(sync::UpdateSyncArgs),
}

/// `beltctl remove …`
#[derive(Debug, Subcommand)]
pub enum RemoveCommand {
    /// Remove a sync from the catalog (capture stays installed until teardown).
    Sync { name: String },
    /// Remove a database definition no sync uses.
    Db { name: String },
}

/// A beltctl command that failed; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    DbSpec(#[from] DbSpecError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Tables(#[from] TableError),
    #[error(transparent)]
    Workflow(#[from] crate::migrate::WorkflowError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

/// Runs one beltctl invocation.
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let config = Config::load(cli.config.as_deref())?;
    #[cfg(feature = "demo")]
    if let Command::Demo(args) = cli.command {
        return demo::run(args).await;
    }
    let mut catalog = Catalog::open(&config.catalog)?;
    match cli.command {
        Command::Add(AddCommand::Db(args)) => db::add(&mut catalog, args),
        Command::Add(AddCommand::Sync(args)) => sync::add(&mut catalog, args).await,
        Command::List {
            what: ListCommand::Dbs { json },
        } => db::list(&catalog, json),
        Command::List {
            what: ListCommand::Syncs { json },
        } => sync::list(&catalog, json),
        Command::List {
            what: ListCommand::Tables { sync, json },
        } => sync::list_tables(&catalog, &sync, json),
        Command::Kick(args) => watch::kick(&mut catalog, args).await,
        Command::Status(args) => watch::status(&mut catalog, args, &config.listen).await,
        Command::Pause { name } => sync::set_paused(&mut catalog, &name, true),
        Command::Resume { name } => sync::set_paused(&mut catalog, &name, false),
        Command::Remove(RemoveCommand::Sync { name }) => sync::remove(&mut catalog, &name),
        Command::Remove(RemoveCommand::Db { name }) => db::remove(&mut catalog, &name),
        Command::Update(UpdateCommand::Sync(args)) => sync::update(&mut catalog, args).await,
        Command::Conflicts(args) => watch::conflicts(&catalog, args),
        Command::Retry { name } => parked::retry(&mut catalog, &name).await,
        Command::Setup(args) => setup::setup(&mut catalog, args).await,
        Command::Precheck(args) => precheck::run(&catalog, args).await,
        Command::Apply(args) => plan::apply(&mut catalog, &config, args).await,
        Command::Verify(args) => verify::run(&catalog, args).await,
        Command::RevokeLogins(args) => logins::revoke(&mut catalog, args).await,
        Command::RestoreLogins(args) => logins::restore(&mut catalog, args).await,
        Command::Teardown(args) => teardown::run(&mut catalog, args).await,
        Command::Cutover(args) => switch::cutover(&mut catalog, args).await,
        Command::Failback(args) => switch::failback(&mut catalog, args).await,
        Command::List {
            what: ListCommand::Parked { sync, json },
        } => parked::list(&catalog, &sync, json),
        #[cfg(feature = "demo")]
        Command::Demo(_) => unreachable!("handled above"),
    }
}
