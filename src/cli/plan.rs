//! `beltctl apply -f FILE.yaml`: apply a plan file (see [`crate::plan`]) and print
//! what it did, one line per database and sync. A sharded config (`shard:`) applies
//! only the syncs of its shard, as the daemon does.

use std::process::ExitCode;

use clap::Args;

use super::sync::report_added;
use super::CliError;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::plan::{Outcome, Plan, PlanError};

/// Arguments of `beltctl apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The plan file (YAML).
    #[arg(short, long)]
    pub file: std::path::PathBuf,
}

/// Applies a plan file: adds what is new, updates what changed, leaves the rest.
/// Exits 1 when a sync could not be applied (the others were).
pub async fn apply(catalog: &mut Catalog, config: &Config, args: ApplyArgs) -> Result<ExitCode, CliError> {
    let usage = |e: PlanError| match e {
        PlanError::Catalog(e) => CliError::Catalog(e),
        e => CliError::Usage(e.to_string()),
    };
    let plan = Plan::load(&args.file).map_err(usage)?;
    let shard = config.shard()?;
    let mut failed = false;
    for done in plan.apply(catalog, shard).await.map_err(usage)? {
        match &done.outcome {
            Outcome::SyncAdded { def, tables } => report_added(def, tables),
            Outcome::RolesChanged(def) => {
                println!(
                    "sync '{}' is now {}",
                    def.name,
                    super::sync::describe_members(&def.members)
                )
            }
            Outcome::Failed(message) => {
                failed = true;
                eprintln!("error: {} {}: {message}", done.kind, done.name);
            }
            outcome => println!("{} {}: {outcome}", done.kind, done.name),
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
