//! `beltctl kick` and `beltctl status`: asking the daemon for a round and reading
//! what it reported. Both work through the catalog, so status also answers while the
//! daemon is down.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use super::output::print_rows;
use super::CliError;
use crate::catalog::{Catalog, StatusReport, SyncState};

/// Arguments of `beltctl kick`.
#[derive(Debug, Args)]
pub struct KickArgs {
    /// The sync.
    pub name: String,
    /// Return only when a round that started after the kick has finished.
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// Arguments of `beltctl status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A sync or a group; every sync when left out.
    pub name: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Keep drawing progress until interrupted.
    #[arg(long, conflicts_with = "json")]
    pub watch: bool,
}

/// Requests a round; with `--wait`, waits for it and reports its outcome.
pub async fn kick(catalog: &mut Catalog, args: KickArgs) -> Result<ExitCode, CliError> {
    let before = catalog.status(&args.name)?.updated_at;
    let seq = catalog.kick(&args.name)?;
    if !args.wait {
        println!("kicked sync '{}'", args.name);
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let status = catalog.status(&args.name)?;
        if status.kick_done >= seq {
            println!(
                "round finished for sync '{}': {} pending, lag {:.1}s",
                args.name, status.pending_rows, status.lag_seconds
            );
            return Ok(ExitCode::SUCCESS);
        }
        if status.state == SyncState::Failed && status.updated_at != before {
            let error = status.last_error.unwrap_or_default();
            return Err(CliError::Failed(format!("sync '{}' failed: {error}", args.name)));
        }
        if Instant::now() >= deadline {
            let why = match (status.state, status.last_error) {
                (SyncState::Failed | SyncState::Retrying, Some(e)) => {
                    format!("the sync is {}: {e}", status.state)
                }
                _ => "is belt-syncd running?".to_string(),
            };
            return Err(CliError::Failed(format!(
                "no round of sync '{}' finished within {}s; {why}",
                args.name, args.timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints the status of one sync, a group, or all; says on stderr whether the
/// daemon answers (the status is what it last recorded either way).
pub async fn status(catalog: &mut Catalog, args: StatusArgs, listen: &str) -> Result<ExitCode, CliError> {
    match crate::api::Listen::parse(listen) {
        Ok(l) => match crate::api::probe(&l).await {
            Ok(()) => eprintln!("belt-syncd: running ({listen})"),
            Err(why) => {
                eprintln!("belt-syncd: not answering at {listen} ({why}); below is what it last recorded")
            }
        },
        Err(e) => eprintln!("belt-syncd: {e}"),
    }
    let names = match &args.name {
        Some(n) => super::setup::resolve_targets(catalog, n)?,
        None => catalog.syncs()?.into_iter().map(|s| s.name).collect(),
    };
    if args.watch {
        return super::setup::watch(catalog, &names, None, None).await;
    }
    let single = args
        .name
        .as_ref()
        .is_some_and(|n| names.len() == 1 && &names[0] == n);
    let mut rows = Vec::new();
    for sync in names {
        let status = catalog.status(&sync)?;
        rows.push(StatusReport::new(sync, status));
    }
    if args.json && single {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows[0]).expect("status serializes")
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_rows(
        args.json,
        &rows,
        &[
            "sync",
            "phase",
            "pending",
            "lag s",
            "consistent",
            "rounds",
            "rows applied",
            "last round",
            "errors",
            "last error",
        ],
        |r| {
            vec![
                r.sync.clone(),
                r.status.phase(),
                r.status.pending_rows.to_string(),
                format!("{:.1}", r.status.lag_seconds),
                match r.status.consistent {
                    Some(true) => "yes".into(),
                    Some(false) => "no (catching up in chunks)".into(),
                    None => String::new(),
                },
                r.status.rounds.to_string(),
                r.status.rows_applied.to_string(),
                r.status.last_round_at.clone().unwrap_or_default(),
                r.status.errors.to_string(),
                r.status.last_error.clone().unwrap_or_default(),
            ]
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `beltctl conflicts`.
#[derive(Debug, Args)]
pub struct ConflictsArgs {
    /// The sync.
    pub name: String,
    /// How many of the newest conflicts to show.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

/// Prints a sync's newest conflicts.
pub fn conflicts(catalog: &Catalog, args: ConflictsArgs) -> Result<ExitCode, CliError> {
    catalog.require_sync(&args.name)?;
    let rows = catalog.conflicts(&args.name, args.limit)?;
    print_rows(
        args.json,
        &rows,
        &[
            "recorded",
            "table",
            "key",
            "kind",
            "first changed",
            "second changed",
            "winner",
            "strategy",
            "losing row",
        ],
        |c| {
            vec![
                c.recorded_at.clone(),
                c.table.clone(),
                c.key.clone(),
                c.kind.clone().unwrap_or_default(),
                format!("{} {}", c.first_db, c.first_changed_at),
                format!("{} {}", c.second_db, c.second_changed_at),
                c.winner.clone().unwrap_or_else(|| "none (both kept)".into()),
                c.strategy.clone(),
                c.loser_row.clone().unwrap_or_default(),
            ]
        },
    );
    Ok(ExitCode::SUCCESS)
}
