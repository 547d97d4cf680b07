//! Rule 6 of DESIGN.md: the initial copy leaves no gap.
//!
//! Capture is installed on the source (and its position recorded) *before* a single
//! row is copied, so every change made during the copy is in a delta table. The copy
//! then moves each table in key-range chunks: one REPEATABLE READ read on the source,
//! and on the target one transaction that deletes the range and COPYs the source's
//! rows into it (binary, streamed, replica mode so no trigger or FK fires). Each
//! finished chunk is checkpointed by its last key, so a restarted daemon resumes at
//! the next chunk. Rounds start when every table is copied, and re-fetch every row
//! changed meanwhile (rule 2). A table without a key is copied whole in one chunk.

use tokio_postgres::{Client, IsolationLevel};

use crate::pg::pipe::{pipe, Copy};
use crate::pg::{quote, DbError, KeyedTable};

/// Default rows per copy chunk.
pub const DEFAULT_COPY_CHUNK_ROWS: i64 = 50_000;

/// One finished chunk: where the next one starts, and how many rows it moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Last key of the chunk; `None` when the table is done.
    pub last_key: Option<Vec<String>>,
    pub rows: u64,
}

/// A database end of a copy: its name (for errors) and a session.
pub struct End<'a> {
    pub db: &'a str,
    pub client: &'a mut Client,
    /// On the receiving end, the sync's fence ([`crate::engine::Side::fence`]) that
    /// starts the chunk's transaction; empty for none.
    pub fence: &'a str,
}

/// A key range of a table: after `after` (exclusive; from the first key when
/// `None`) up to `upper` (inclusive; to the last key when `None`).
#[derive(Debug, Clone, Copy)]
pub struct Range<'a> {
    pub after: Option<&'a [String]>,
    pub upper: Option<&'a [String]>,
}

/// Copies the next chunk of at most `rows` rows of `range`; `last_key` is `None`
/// when that finished the range.
pub async fn copy_chunk(
    from: End<'_>,
    to: End<'_>,
    table: &KeyedTable,
    range: Range<'_>,
    rows: i64,
) -> Result<Copied, DbError> {
    let name = table.table.display_name();
    let stx = from
        .client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| DbError::query(from.db, format!("begin copy of {name}"), e))?;
    let dtx = to
        .client
        .transaction()
        .await
        .map_err(|e| DbError::query(to.db, format!("begin copy of {name}"), e))?;
    if !to.fence.is_empty() {
        dtx.batch_execute(to.fence)
            .await
            .map_err(|e| DbError::query(to.db, format!("begin copy of {name}"), e))?;
    }
    let t = table.table.qualified();
    let (last_key, range) = if table.key.is_empty() {
        dtx.batch_execute(&format!("truncate only {t}"))
            .await
            .map_err(|e| DbError::query(to.db, format!("empty {name} before copying it whole"), e))?;
        (None, "true".to_string())
    } else {
        let bounds = table.key_range(range.after, range.upper);
        let hi = chunk_end(stx.client(), from.db, table, &bounds, rows).await?;
        // The chunk's end is below the range's upper bound, when it has one.
        let range = table.key_range(range.after, hi.as_deref().or(range.upper));
        dtx.batch_execute(&format!("delete from {t} where {range}"))
            .await
            .map_err(|e| DbError::query(to.db, format!("clear a range of {name}"), e))?;
        (hi, range)
    };
    let cols = quote::ident_list(&table.write_cols);
    let copy = Copy {
        out: format!("copy (select {cols} from {t} where {range}) to stdout (format binary)"),
        into: format!("copy {t} ({cols}) from stdin (format binary)"),
        what: format!("rows of {name}"),
    };
    let copied = pipe((from.db, stx.client()), (to.db, dtx.client()), &copy).await?;
    dtx.commit()
        .await
        .map_err(|e| DbError::query(to.db, format!("commit copy of {name}"), e))?;
    stx.commit()
        .await
        .map_err(|e| DbError::query(from.db, format!("end copy of {name}"), e))?;
    Ok(Copied {
        last_key,
        rows: copied,
    })
}

/// The key `rows` rows into `bounds` in key order, as text; `None` when fewer remain.
pub(crate) async fn chunk_end(
    client: &Client,
    db: &str,
    table: &KeyedTable,
    bounds: &str,
    rows: i64,
) -> Result<Option<Vec<String>>, DbError> {
    // The text casts stay outside the ordered subquery: `order by id` next to an
    // output column `id::text` (also named id) would sort by the text.
    let texts = table
        .key
        .iter()
        .map(|k| format!("s.{}::text", quote::ident(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "select {texts} from (select {k} from {t} where {bounds} order by {k} offset {offset} limit 1) s",
        t = table.table.qualified(),
        k = table.key_list(),
        offset = rows.max(1) - 1,
    );
    let row = client.query_opt(&sql, &[]).await.map_err(|e| {
        DbError::query(
            db,
            format!("find the next chunk of {}", table.table.display_name()),
            e,
        )
    })?;
    Ok(row.map(|r| (0..table.key.len()).map(|i| r.get::<_, String>(i)).collect()))
}

/// Estimated rows of a table (`reltuples`), for progress; 0 when never analyzed.
pub async fn estimate_rows(client: &Client, db: &str, table: &KeyedTable) -> Result<i64, DbError> {
    let row = client
        .query_one(
            "select greatest(c.reltuples, 0)::int8 from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relname = $2",
            &[&table.table.schema, &table.table.name],
        )
        .await
        .map_err(|e| DbError::query(db, format!("estimate rows of {}", table.table.display_name()), e))?;
    Ok(row.get(0))
}

/// Keys that cut a large table into `parts` ranges of about equal key span, for
/// copying them in parallel. Only single-column integer keys are cut (their span
/// is arithmetic); any other table is copied as one range.
pub async fn split_points(
    client: &Client,
    db: &str,
    table: &KeyedTable,
    parts: usize,
) -> Result<Vec<Vec<String>>, DbError> {
    let integer =
        matches!(table.key_types.as_slice(), [t] if matches!(t.as_str(), "smallint" | "integer" | "bigint"));
    if !integer || parts < 2 {
        return Ok(Vec::new());
    }
    let k = quote::ident(&table.key[0]);
    let row = client
        .query_one(
            &format!(
                "select min({k})::int8, max({k})::int8 from {}",
                table.table.qualified()
            ),
            &[],
        )
        .await
        .map_err(|e| {
            DbError::query(
                db,
                format!("find the key span of {}", table.table.display_name()),
                e,
            )
        })?;
    let (Some(lo), Some(hi)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1)) else {
        return Ok(Vec::new());
    };
    let span = (hi as i128 - lo as i128) / parts as i128;
    if span < 1 {
        return Ok(Vec::new());
    }
    Ok((1..parts as i128)
        .map(|i| vec![(lo as i128 + span * i).to_string()])
        .collect())
}
