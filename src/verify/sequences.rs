//! Verify's sequence check: after a cutover the target hands out new values, so each
//! of the source's sequences (owned by a column or called by the application itself)
//! must exist on the target and stand at or past the source's last value.

use serde::Serialize;
use tokio_postgres::Client;

use crate::pg::introspect::all_sequences;
use crate::pg::{quote, DbError};

/// A sequence on both sides.
#[derive(Debug, Serialize)]
pub struct SequenceVerdict {
    pub sequence: String,
    pub source: i64,
    /// `None`: the target has no such sequence.
    pub target: Option<i64>,
    /// The target hands out no value the source already used.
    pub ok: bool,
}

/// Compares every sequence of `source` with the target's.
pub async fn verify_sequences(
    source: (&Client, &str),
    target: (&Client, &str),
) -> Result<Vec<SequenceVerdict>, DbError> {
    let there = all_sequences(target.0, target.1).await?;
    let mut verdicts = Vec::new();
    for seq in all_sequences(source.0, source.1).await? {
        let name = quote::qualified(&seq.schema, &seq.name);
        let a = last_used(source.0, source.1, &name).await?;
        let b = match there.contains(&seq) {
            true => Some(last_used(target.0, target.1, &name).await?),
            false => None,
        };
        verdicts.push(SequenceVerdict {
            sequence: format!("{}.{}", seq.schema, seq.name),
            source: a,
            target: b,
            ok: b.is_some_and(|b| b >= a),
        });
    }
    Ok(verdicts)
}

/// The last value a sequence handed out (one below its start when never used).
async fn last_used(c: &Client, db: &str, sequence: &str) -> Result<i64, DbError> {
    c.query_one(
        &format!("select case when is_called then last_value else last_value - 1 end from {sequence}"),
        &[],
    )
    .await
    .map(|r| r.get(0))
    .map_err(|e| DbError::query(db, format!("read sequence {sequence}"), e))
}
