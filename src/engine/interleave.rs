//! Rule 7 of DESIGN.md, two-source part: while both databases of a sync are sources,
//! no sequence hands out a value the other side also hands out. Each shared sequence
//! draws every other value — odd on the sync's first database, even on the second —
//! from above the highest value either side used. The original increment is recorded
//! in `belt.interleaved` on the database itself and put back (with both sides moved
//! past every value used) when the sync stops having two sources or is torn down.
//!
//! Only sequences that count up by one are interleaved; others are left alone and
//! logged. Values an application picks itself can still collide; the conflict is
//! then recorded like any other.

use tokio_postgres::Client;

use super::Side;
use crate::pg::introspect::TableName;
use crate::pg::{quote, DbError};

/// Values between the highest one used and the first interleaved one: room for the
/// inserts committed on the other side while the two sides are switched over.
const MARGIN: i64 = 1000;

/// `(increment, last value used)` of a sequence, `None` when it does not exist.
async fn state(c: &Client, db: &str, seq: &TableName) -> Result<Option<(i64, i64)>, DbError> {
    Ok(c.query_opt(
        "select increment_by, coalesce(last_value, start_value - 1) from pg_sequences \
         where schemaname = $1 and sequencename = $2",
        &[&seq.schema, &seq.name],
    )
    .await
    .map_err(|e| DbError::query(db, format!("read sequence {}", seq.display_name()), e))?
    .map(|r| (r.get(0), r.get(1))))
}

async fn recorded(c: &Client, db: &str) -> Result<Vec<(TableName, i64)>, DbError> {
    let exists: bool = c
        .query_one("select to_regclass('belt.interleaved') is not null", &[])
        .await
        .map_err(|e| DbError::query(db, "look for interleaved sequences", e))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    Ok(c.query(
        "select schema_name, seq_name, original_increment from belt.interleaved",
        &[],
    )
    .await
    .map_err(|e| DbError::query(db, "read interleaved sequences", e))?
    .iter()
    .map(|r| {
        let name = TableName {
            schema: r.get(0),
            name: r.get(1),
        };
        (name, r.get(2))
    })
    .collect())
}

/// Makes both sides draw their own values from every sequence of `seqs`; returns
/// how many it changed (none when they already were).
pub async fn interleave(sides: &[Side; 2], seqs: &[TableName]) -> Result<usize, DbError> {
    let done = [
        recorded(&sides[0].client, &sides[0].db).await?,
        recorded(&sides[1].client, &sides[1].db).await?,
    ];
    let mut changed = 0;
    for seq in seqs {
        let mut states = Vec::new();
        for side in sides {
            states.push(state(&side.client, &side.db, seq).await?);
        }
        let [Some((inc_a, last_a)), Some((inc_b, last_b))] = [states[0], states[1]] else {
            continue;
        };
        let is_done = |i: usize| done[i].iter().any(|(s, _)| s == seq);
        if is_done(0) && is_done(1) && inc_a == 2 && inc_b == 2 {
            continue;
        }
        if [(0, inc_a), (1, inc_b)]
            .iter()
            .any(|&(i, inc)| inc != 1 && !is_done(i))
        {
            tracing::warn!(sequence = %seq.display_name(), "sequence does not count up by one: not interleaved");
            continue;
        }
        let top = last_a.max(last_b) + MARGIN;
        for (i, side) in sides.iter().enumerate() {
            // The first database draws odd values, the second even ones.
            let parity = if i == 0 { 1 } else { 0 };
            let start = if top.rem_euclid(2) == parity { top } else { top + 1 };
            let name = quote::qualified(&seq.schema, &seq.name);
            side.client
                .execute(
                    "insert into belt.interleaved values ($1, $2, 1) on conflict do nothing",
                    &[&seq.schema, &seq.name],
                )
                .await
                .map_err(|e| DbError::query(&side.db, "record an interleaved sequence", e))?;
            side.client
                .batch_execute(&format!(
                    "alter sequence {name} increment by 2 restart with {start}"
                ))
                .await
                .map_err(|e| {
                    DbError::query(&side.db, format!("interleave sequence {}", seq.display_name()), e)
                })?;
        }
        changed += 1;
    }
    Ok(changed)
}

/// Puts back the increment of every sequence belt interleaved on either side and
/// moves both sides past every value either used; returns how many.
pub async fn put_back(sides: [(&Client, &str); 2]) -> Result<usize, DbError> {
    let done = [
        recorded(sides[0].0, sides[0].1).await?,
        recorded(sides[1].0, sides[1].1).await?,
    ];
    let mut seqs: Vec<&TableName> = done.iter().flatten().map(|(s, _)| s).collect();
    seqs.sort_by_key(|s| s.display_name());
    seqs.dedup();
    for seq in &seqs {
        let mut top = i64::MIN;
        for (c, db) in sides {
            if let Some((_, last)) = state(c, db, seq).await? {
                top = top.max(last);
            }
        }
        let name = quote::qualified(&seq.schema, &seq.name);
        let (schema, seq_name) = (quote::literal(&seq.schema), quote::literal(&seq.name));
        for (i, (c, db)) in sides.iter().enumerate() {
            let Some((_, original)) = done[i].iter().find(|(s, _)| s == *seq) else {
                continue;
            };
            let sql = format!(
                "alter sequence {name} increment by {original}; \
                 select setval({}, greatest({top}, min_value), {top} >= min_value) from pg_sequences \
                  where schemaname = {schema} and sequencename = {seq_name}; \
                 delete from belt.interleaved where schema_name = {schema} and seq_name = {seq_name}",
                quote::literal(&name)
            );
            c.batch_execute(&sql)
                .await
                .map_err(|e| DbError::query(db, format!("put back sequence {}", seq.display_name()), e))?;
        }
    }
    Ok(seqs.len())
}
