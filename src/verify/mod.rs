//! `beltctl verify`: are the two databases equal? Every replicated table is compared
//! in key-range chunks by row count and an order-independent hash of the rows' text
//! on both sides; a chunk that differs is compared row by row and its keys named.
//! Key-less tables are compared whole. Sessions pin their settings (time zone, date
//! and interval styles, float digits, bytea output), so servers of different major
//! versions print equal values alike. While replication runs, a differing chunk is
//! checked again a few times before it counts: a row in flight is not a difference.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::Client;

pub mod coverage;
pub mod sequences;

use crate::pg::{quote, DbError, KeyedTable};

/// Rows per compared chunk.
pub const VERIFY_CHUNK_ROWS: i64 = 50_000;
/// Times a differing chunk is compared again before it counts.
const RECHECKS: u32 = 3;

/// One key that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyDiff {
    /// The key's values, comma-separated.
    pub key: String,
    /// `missing on the target`, `extra on the target` or `different`.
    pub kind: String,
}

/// One table's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct TableVerdict {
    pub table: String,
    pub rows: i64,
    pub equal: bool,
    /// Up to a hundred differing keys (key-less tables: none, only counts).
    pub differences: Vec<KeyDiff>,
    pub detail: Option<String>,
}

/// Which side is which, for messages.
pub struct Sides<'a> {
    pub source: &'a Client,
    pub target: &'a Client,
    pub source_db: &'a str,
    pub target_db: &'a str,
}

/// Row count and the sum of the rows' 64-bit text hashes. `hashtextextended` is the
/// hash of hash partitioning, so it is the same on every server version and
/// platform; it is several times cheaper than md5, and a wrong row still changes
/// the sum with near certainty.
fn hash_sql(table: &KeyedTable, range: &str) -> String {
    format!(
        "select count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text from {} t where {range}",
        table.table.qualified()
    )
}

async fn fingerprint(
    c: &Client,
    db: &str,
    table: &KeyedTable,
    range: &str,
) -> Result<(i64, String), DbError> {
    let row = c
        .query_one(&hash_sql(table, range), &[])
        .await
        .map_err(|e| DbError::query(db, format!("checksum {}", table.table.display_name()), e))?;
    Ok((row.get(0), row.get(1)))
}

/// Every key of the range with the md5 of its row.
async fn row_hashes(
    c: &Client,
    db: &str,
    table: &KeyedTable,
    range: &str,
) -> Result<BTreeMap<String, String>, DbError> {
    let keys = table
        .key
        .iter()
        .map(|k| format!("t.{}::text", quote::ident(k)))
        .collect::<Vec<_>>()
        .join(" || ',' || ");
    let rows = c
        .query(
            &format!(
                "select {keys}, md5(t::text) from {} t where {range}",
                table.table.qualified()
            ),
            &[],
        )
        .await
        .map_err(|e| DbError::query(db, format!("compare rows of {}", table.table.display_name()), e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Compares one table on both sides.
pub async fn verify_table(
    s: &Sides<'_>,
    table: &KeyedTable,
    chunk_rows: i64,
) -> Result<TableVerdict, DbError> {
    let name = table.table.display_name();
    if table.key.is_empty() {
        let (a, b) = tokio::try_join!(
            fingerprint(s.source, s.source_db, table, "true"),
            fingerprint(s.target, s.target_db, table, "true"),
        )?;
        let detail = (a != b).then(|| {
            format!(
                "{} rows on '{}', {} on '{}', contents differ",
                a.0, s.source_db, b.0, s.target_db
            )
        });
        return Ok(TableVerdict {
            table: name,
            rows: a.0,
            equal: a == b,
            differences: Vec::new(),
            detail,
        });
    }
    let mut verdict = TableVerdict {
        table: name,
        rows: 0,
        equal: true,
        differences: Vec::new(),
        detail: None,
    };
    let mut after: Option<Vec<String>> = None;
    loop {
        let lower = table.key_range(after.as_deref(), None);
        let hi = crate::copy::chunk_end(s.source, s.source_db, table, &lower, chunk_rows).await?;
        let range = table.key_range(after.as_deref(), hi.as_deref());
        let (rows, diffs) = compare_range(s, table, &range).await?;
        verdict.rows += rows;
        if !diffs.is_empty() {
            verdict.equal = false;
            let room = 100usize.saturating_sub(verdict.differences.len());
            verdict.differences.extend(diffs.into_iter().take(room));
        }
        match hi {
            Some(h) => after = Some(h),
            None => return Ok(verdict),
        }
    }
}

/// Rows of the range on the source, and the differing keys (after re-checks).
async fn compare_range(
    s: &Sides<'_>,
    table: &KeyedTable,
    range: &str,
) -> Result<(i64, Vec<KeyDiff>), DbError> {
    let mut attempt = 0;
    loop {
        let (a, b) = tokio::try_join!(
            fingerprint(s.source, s.source_db, table, range),
            fingerprint(s.target, s.target_db, table, range),
        )?;
        if a == b {
            return Ok((a.0, Vec::new()));
        }
        if attempt == RECHECKS {
            let (src, dst) = tokio::try_join!(
                row_hashes(s.source, s.source_db, table, range),
                row_hashes(s.target, s.target_db, table, range),
            )?;
            let mut diffs = Vec::new();
            for (k, h) in &src {
                match dst.get(k) {
                    None => diffs.push(KeyDiff {
                        key: k.clone(),
                        kind: "missing on the target".into(),
                    }),
                    Some(d) if d != h => diffs.push(KeyDiff {
                        key: k.clone(),
                        kind: "different".into(),
                    }),
                    Some(_) => {}
                }
            }
            for k in dst.keys().filter(|k| !src.contains_key(*k)) {
                diffs.push(KeyDiff {
                    key: k.clone(),
                    kind: "extra on the target".into(),
                });
            }
            return Ok((a.0, diffs));
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt))).await;
    }
}
