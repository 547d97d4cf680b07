//! belt-syncd: load the config, set up logging, run the daemon until SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use belt::config::LogFormat;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The belt replication daemon: runs every active sync of the catalog.
#[derive(Parser)]
#[command(name = "belt-syncd", version)]
struct Args {
    /// Config file (YAML); defaults apply without one.
    #[arg(short, long, env = "BELT_CONFIG")]
    config: Option<PathBuf>,
    /// A plan file to apply at start and on SIGHUP (overrides `plan:` in the config).
    #[arg(long, env = "BELT_PLAN")]
    plan: Option<PathBuf>,
    /// Validate the config and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match belt::config::Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.check_config {
        println!("config ok");
        return ExitCode::SUCCESS;
    }
    let filter = EnvFilter::try_from_env("BELT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).init(),
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(belt::daemon::run(config, args.config, args.plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %belt::pg::error::render(&e), "belt-syncd failed");
            ExitCode::FAILURE
        }
    }
}
