//! `beltctl list parked` and `beltctl retry`: keys whose rows could not be applied,
//! and putting them back in play once the cause is fixed.

use std::process::ExitCode;

use super::output::print_rows;
use super::CliError;
use crate::catalog::Catalog;
use crate::engine::park;
use crate::pg::connect;

/// Lists a sync's parked keys with the database error.
pub fn list(catalog: &Catalog, sync: &str, json: bool) -> Result<ExitCode, CliError> {
    catalog.require_sync(sync)?;
    let parked = catalog.parked(sync)?;
    print_rows(
        json,
        &parked,
        &["parked", "table", "key", "from → failed on", "error"],
        |r| {
            let p = &r.parked;
            vec![
                r.parked_at.clone(),
                format!("{}.{}", p.schema, p.table),
                p.key.join(","),
                format!("{} → {}", p.from_db, p.failed_db),
                p.error.clone(),
            ]
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// Re-queues every parked key of a sync on the database it came from.
pub async fn retry(catalog: &mut Catalog, sync: &str) -> Result<ExitCode, CliError> {
    catalog.require_sync(sync)?;
    let tables = catalog.relations(sync)?;
    let parked = catalog.parked(sync)?;
    for record in &parked {
        let p = &record.parked;
        let table = tables
            .iter()
            .find(|t| t.schema == p.schema && t.name == p.table)
            .ok_or_else(|| {
                CliError::Failed(format!(
                    "table {}.{} is no longer part of sync '{sync}'",
                    p.schema, p.table
                ))
            })?;
        let spec = catalog.require_db(&p.from_db)?;
        let client = connect(&spec).await?;
        park::requeue(&client, &spec.name, table, &p.key).await?;
        catalog.unpark(record.id)?;
    }
    println!("re-queued {} parked key(s) of sync '{sync}'", parked.len());
    Ok(ExitCode::SUCCESS)
}
