//! `beltctl revoke-logins` and `beltctl restore-logins`: fence the application off
//! one database of a sync for a cutover, and let it back in afterwards.

use std::process::ExitCode;

use clap::Args;

use super::CliError;
use crate::catalog::Catalog;
use crate::migrate::logins::{application_roles, set_login, terminate};
use crate::pg::connect;

/// Arguments of `beltctl revoke-logins`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The sync.
    pub name: String,
    /// The database to fence (one of the sync's).
    #[arg(long)]
    pub db: String,
    /// Also end the fenced roles' open sessions.
    #[arg(long)]
    pub terminate: bool,
    /// Roles to leave alone (repeat the flag for several).
    #[arg(long = "exclude")]
    pub exclude: Vec<String>,
}

/// Arguments of `beltctl restore-logins`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The sync.
    pub name: String,
    /// The database whose roles belt fenced.
    #[arg(long)]
    pub db: String,
}

fn member_db(catalog: &Catalog, sync: &str, db: &str) -> Result<crate::pg::DbSpec, CliError> {
    let def = catalog.require_sync(sync)?;
    if !def.members.iter().any(|m| m.db == db) {
        return Err(CliError::Usage(format!(
            "database '{db}' is not part of sync '{sync}'"
        )));
    }
    Ok(catalog.require_db(db)?)
}

/// Sets the application's roles to NOLOGIN, recording each before it changes it.
pub async fn revoke(catalog: &mut Catalog, args: RevokeArgs) -> Result<ExitCode, CliError> {
    let spec = member_db(catalog, &args.name, &args.db)?;
    let client = connect(&spec).await?;
    let roles = application_roles(&client, &spec.name, &args.exclude).await?;
    for role in &roles {
        catalog.record_revoked(&args.name, &spec.name, role)?;
        set_login(&client, &spec.name, role, false).await?;
    }
    let ended = if args.terminate {
        terminate(&client, &spec.name, &roles).await?
    } else {
        0
    };
    println!(
        "revoked the logins of {} role(s) on '{}': {}{}",
        roles.len(),
        spec.name,
        roles.join(", "),
        if args.terminate {
            format!("; ended {ended} session(s)")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Gives back the logins belt revoked, and only those.
pub async fn restore(catalog: &mut Catalog, args: RestoreArgs) -> Result<ExitCode, CliError> {
    let spec = member_db(catalog, &args.name, &args.db)?;
    let client = connect(&spec).await?;
    let roles = catalog.revoked(&args.name, &spec.name)?;
    for role in &roles {
        set_login(&client, &spec.name, role, true).await?;
        catalog.forget_revoked(&args.name, &spec.name, role)?;
    }
    println!(
        "restored the logins of {} role(s) on '{}': {}",
        roles.len(),
        spec.name,
        roles.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
