//! beltctl: parse arguments, run one command, print one error report on failure.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = belt::cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(belt::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", belt::pg::error::render(&e));
            ExitCode::FAILURE
        }
    }
}
