//! `beltctl teardown NAME`: stop a sync and remove everything belt put on its
//! databases — triggers, functions, delta tables, and schema `belt` when no other
//! sync uses it — then the sync itself. Safe to run again.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use super::CliError;
use crate::capture;
use crate::catalog::Catalog;
use crate::engine::interleave;
use crate::pg::connect;

/// Arguments of `beltctl teardown`.
#[derive(Debug, Args)]
pub struct TeardownArgs {
    /// The sync.
    pub name: String,
    /// Tear down even while a cutover or failback is under way.
    #[arg(long)]
    pub force: bool,
}

/// Pauses the sync, waits for the daemon to let go, uninstalls capture, forgets it.
pub async fn run(catalog: &mut Catalog, args: TeardownArgs) -> Result<ExitCode, CliError> {
    let Some(def) = catalog.sync(&args.name)? else {
        println!("sync '{}' is not in the catalog: nothing to tear down", args.name);
        return Ok(ExitCode::SUCCESS);
    };
    if catalog.authority(&def.name)?.1 && !args.force {
        return Err(CliError::Usage(format!(
            "sync '{}' is in the middle of a cutover or failback: finish it (run it again) or pass --force",
            def.name
        )));
    }
    catalog.set_paused(&def.name, true)?;
    // A running daemon stops the sync within a second; a stopped one never had it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !catalog.status(&def.name)?.state.is_idle() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let tables = catalog.relations(&def.name)?;
    let others = catalog
        .syncs()?
        .into_iter()
        .filter(|s| s.name != def.name)
        .collect::<Vec<_>>();
    if let [a, b] = def.members.as_slice() {
        let (a, b) = (catalog.require_db(&a.db)?, catalog.require_db(&b.db)?);
        let (ca, cb) = (connect(&a).await?, connect(&b).await?);
        let n = interleave::put_back([(&ca, a.name.as_str()), (&cb, b.name.as_str())]).await?;
        if n > 0 {
            println!("put back the increment of {n} interleaved sequence(s) on both databases");
        }
    }
    for m in &def.members {
        let spec = catalog.require_db(&m.db)?;
        let client = connect(&spec).await?;
        if others.iter().any(|o| o.members.iter().any(|om| om.db == m.db)) {
            capture::uninstall_tables(&client, &spec.name, &tables).await?;
            capture::doorbell::forget(&client, &spec.name, &def.name).await?;
        } else {
            capture::uninstall_all(&client, &spec.name).await?;
        }
        println!("removed belt's objects from '{}'", spec.name);
    }
    catalog.remove_sync(&def.name)?;
    println!("sync '{}' torn down", def.name);
    Ok(ExitCode::SUCCESS)
}
