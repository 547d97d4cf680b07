//! `beltctl add db`, `list dbs`, `remove db`.

use std::process::ExitCode;

use clap::Args;

use super::output::print_rows;
use super::CliError;
use crate::catalog::Catalog;
use crate::pg::DbSpec;

/// Arguments of `beltctl add db`.
#[derive(Debug, Args)]
pub struct AddDbArgs {
    /// Name to refer to the database by (`src`, `dst`, …).
    pub name: String,
    /// libpq keys as key=value (host port dbname user sslmode …) or one postgres://
    /// URI without a password, plus where the password comes from: password_env=VAR,
    /// password_file=PATH, or password_command='PROGRAM ARGS…' (run without a shell
    /// on connect, its first output line used for password_ttl=SECONDS, default 60).
    #[arg(required = true)]
    pub settings: Vec<String>,
}

/// Stores a database definition (no password, ever).
pub fn add(catalog: &mut Catalog, args: AddDbArgs) -> Result<ExitCode, CliError> {
    let spec = DbSpec::parse(&args.name, &args.settings)?;
    catalog.add_db(&spec)?;
    println!("added database '{}' ({})", spec.name, spec.describe());
    Ok(ExitCode::SUCCESS)
}

/// Lists database definitions.
pub fn list(catalog: &Catalog, json: bool) -> Result<ExitCode, CliError> {
    let dbs = catalog.dbs()?;
    print_rows(json, &dbs, &["name", "connection", "password from"], |d| {
        let from = match (&d.password_env, &d.password_file, &d.password_command) {
            (Some(v), _, _) => format!("env {v}"),
            (_, Some(f), _) => format!("file {}", f.display()),
            (_, _, Some(c)) => format!("command {}", c.first().map_or("", String::as_str)),
            _ => "pgpass or none".into(),
        };
        vec![d.name.clone(), d.describe(), from]
    });
    Ok(ExitCode::SUCCESS)
}

/// Removes a database definition.
pub fn remove(catalog: &mut Catalog, name: &str) -> Result<ExitCode, CliError> {
    catalog.remove_db(name)?;
    println!("removed database '{name}'");
    Ok(ExitCode::SUCCESS)
}
