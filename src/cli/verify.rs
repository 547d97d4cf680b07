//! `beltctl verify NAME`: compare every table (and sequence) of a sync on both
//! databases; exit 1 on any difference, naming tables and keys.

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use super::output::print_rows;
use super::CliError;
use crate::catalog::Catalog;
use crate::pg::connect;
use crate::pg::KeyedTable;
use crate::verify::coverage::{uncovered, Uncovered};
use crate::verify::sequences::{verify_sequences, SequenceVerdict};
use crate::verify::{verify_table, Sides, TableVerdict, VERIFY_CHUNK_ROWS};

/// Arguments of `beltctl verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The sync.
    pub name: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    sync: String,
    source: String,
    target: String,
    equal: bool,
    tables: Vec<TableVerdict>,
    sequences: Vec<SequenceVerdict>,
    /// Tables of either database that no sync between the two replicates.
    unreplicated: Vec<Uncovered>,
}

/// Compares a sync's databases.
pub async fn run(catalog: &Catalog, args: VerifyArgs) -> Result<ExitCode, CliError> {
    let def = catalog.require_sync(&args.name)?;
    let pair = catalog.db_pair(&def)?;
    let s = crate::catalog::first_source(pair.sources());
    let [a, b] = pair.specs;
    let (src_spec, dst_spec) = if s == 0 { (a, b) } else { (b, a) };
    let (src, dst) = (connect(&src_spec).await?, connect(&dst_spec).await?);
    let sides = Sides {
        source: &src,
        target: &dst,
        source_db: &src_spec.name,
        target_db: &dst_spec.name,
    };
    let mut report = Report {
        sync: def.name.clone(),
        source: src_spec.name.clone(),
        target: dst_spec.name.clone(),
        equal: true,
        tables: Vec::new(),
        sequences: Vec::new(),
        unreplicated: Vec::new(),
    };
    for info in catalog.relations(&def.name)? {
        let plan = KeyedTable::new(&info);
        let verdict = verify_table(&sides, &plan, VERIFY_CHUNK_ROWS).await?;
        report.equal &= verdict.equal;
        report.tables.push(verdict);
    }
    let replicated = catalog.replicated_between(&src_spec.name, &dst_spec.name)?;
    report.unreplicated = uncovered(
        [(&src, src_spec.name.as_str()), (&dst, dst_spec.name.as_str())],
        &replicated,
        &[],
    )
    .await?;
    report.equal &= report.unreplicated.is_empty();
    report.sequences = verify_sequences((&src, &src_spec.name), (&dst, &dst_spec.name)).await?;
    report.equal &= report.sequences.iter().all(|q| q.ok);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
    } else {
        print_rows(false, &report.tables, &["table", "rows", "result"], |t| {
            let result = match (&t.detail, t.equal) {
                (_, true) => "equal".to_string(),
                (Some(d), false) => d.clone(),
                (None, false) => format!("{} keys differ", t.differences.len()),
            };
            vec![t.table.clone(), t.rows.to_string(), result]
        });
        for t in report.tables.iter().filter(|t| !t.equal) {
            for d in &t.differences {
                println!("{}: key ({}) {}", t.table, d.key, d.kind);
            }
        }
        for u in &report.unreplicated {
            println!("table {}", u.describe());
        }
        for q in report.sequences.iter().filter(|q| !q.ok) {
            match q.target {
                Some(t) => println!(
                    "sequence {}: target at {t} is behind the source's {}",
                    q.sequence, q.source
                ),
                None => println!("sequence {}: missing on the target", q.sequence),
            }
        }
        println!(
            "verify {}: {} ('{}' vs '{}')",
            report.sync,
            if report.equal { "equal" } else { "DIFFERENT" },
            report.source,
            report.target
        );
    }
    Ok(if report.equal {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
