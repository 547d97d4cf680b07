//! `beltctl cutover` and `beltctl failback`: parse, run [`crate::migrate::switch`]
//! and print its gates. Cutover makes the sync's second database authoritative,
//! failback the first.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::CliError;
use crate::catalog::Catalog;
use crate::migrate::switch::{switch as run_switch, Outcome, Progress};
use crate::pg::error::render;

/// Arguments of `beltctl cutover` and `beltctl failback`.
#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// The sync.
    pub name: String,
    /// How long to wait for both directions to drain: `90s`, `5m`.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// A table of either database that is deliberately not replicated (`schema.table`,
    /// or `table` in public); repeat for several. Any other such table stops the switch.
    #[arg(long = "exclude", value_name = "TABLE")]
    pub exclude: Vec<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 90s or 5m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("'{text}' is not a duration like 90s or 5m")),
    }
}

/// Makes the sync's second database authoritative.
pub async fn cutover(catalog: &mut Catalog, args: SwitchArgs) -> Result<ExitCode, CliError> {
    switch(catalog, args, 1).await
}

/// Makes the sync's first database authoritative again.
pub async fn failback(catalog: &mut Catalog, args: SwitchArgs) -> Result<ExitCode, CliError> {
    switch(catalog, args, 0).await
}

async fn switch(catalog: &mut Catalog, args: SwitchArgs, to_index: usize) -> Result<ExitCode, CliError> {
    let mut report = |p: Progress| match p {
        Progress::Started { from, to } => {
            println!(
                "moving the writes of sync '{}' from '{from}' to '{to}'",
                args.name
            )
        }
        Progress::Gate { name, ok, took } => {
            let mark = if ok { "ok" } else { "FAILED" };
            println!("  {name:<26} {mark:<7} {:>7.2}s", took.as_secs_f64());
        }
    };
    let outcome = run_switch(
        catalog,
        &args.name,
        to_index,
        args.timeout,
        &args.exclude,
        &mut report,
    )
    .await?;
    match outcome {
        Outcome::Already { db } => {
            println!("'{db}' is authoritative already: nothing to do");
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Switched { from, to } => {
            println!("done: point the applications at '{to}'; '{from}' keeps receiving every write and stays fenced");
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Stopped {
            from,
            error,
            restored,
        } => {
            eprintln!("stopped: {}", render(&error));
            match restored {
                Ok(n) => {
                    eprintln!("'{from}' is still authoritative; its {n} fenced role(s) can log in again")
                }
                Err(r) => eprintln!(
                    "'{from}' is still authoritative, but its logins could not be restored: {}; \
                     run beltctl restore-logins {} --db {from}",
                    render(&r),
                    args.name
                ),
            }
            eprintln!("fix the cause, then run the same command again");
            Ok(ExitCode::FAILURE)
        }
    }
}
