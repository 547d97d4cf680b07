//! Streams the output of a `COPY … TO STDOUT` on one session into a
//! `COPY … FROM STDIN` on another, chunk by chunk, so memory stays flat however
//! many rows move. Or the rows of a prepared query, as binary COPY tuples: a
//! `COPY (query)` is planned again every time it runs, a prepared query once.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::{maybe_done, try_join_all};
use futures_util::{pin_mut, SinkExt, TryStreamExt};
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{Client, CopyInSink, CopyOutStream, Row, RowStream, Statement};

use super::prepared::Prepared;
use super::DbError;

/// Bytes gathered before they are passed to the receiving side.
const BLOCK: usize = 64 * 1024;

/// One end of a pipe: the database's name (for errors) and its session.
pub type CopySide<'a> = (&'a str, &'a Client);

/// Runs `copy` from `from` (its COPY TO) into `to` (its COPY FROM); returns rows
/// written.
pub async fn pipe(
    (from_db, from): CopySide<'_>,
    (to_db, to): CopySide<'_>,
    copy: &Copy,
) -> Result<u64, DbError> {
    let what = &copy.what;
    // Both ends start at once: one round trip, not two.
    let (out, sink) = tokio::try_join!(
        async {
            from.copy_out(copy.out.as_str())
                .await
                .map_err(|e| DbError::query(from_db, format!("read {what}"), e))
        },
        async {
            to.copy_in::<_, Bytes>(copy.into.as_str())
                .await
                .map_err(|e| DbError::query(to_db, format!("write {what}"), e))
        },
    )?;
    stream_into(Out::Copy(out), sink, [from_db, to_db], what).await
}

/// Streams one COPY TO, or one query's rows, into one COPY FROM; returns the rows
/// written.
async fn stream_into(
    out: Out,
    sink: CopyInSink<Bytes>,
    [from_db, to_db]: [&str; 2],
    what: &str,
) -> Result<u64, DbError> {
    pin_mut!(sink);
    let read = |e| DbError::query(from_db, format!("read {what}"), e);
    let write = |e| DbError::query(to_db, format!("write {what}"), e);
    // A COPY TO sends one message per row, a query one row at a time. Rows are
    // gathered into blocks before they go on (a COPY stream may be cut anywhere), so
    // the receiving side handles one message per block instead of one per row; and
    // fed, not sent, so the sink flushes when its own buffer fills rather than
    // after every block.
    let mut block = BytesMut::with_capacity(BLOCK);
    match out {
        Out::Copy(out) => {
            pin_mut!(out);
            while let Some(chunk) = out.try_next().await.map_err(read)? {
                block.extend_from_slice(&chunk);
                feed_full(&mut sink, &mut block).await.map_err(write)?;
            }
        }
        Out::Rows(out) => {
            pin_mut!(out);
            block.extend_from_slice(COPY_HEADER);
            while let Some(row) = out.try_next().await.map_err(read)? {
                put_tuple(&mut block, &row).map_err(read)?;
                feed_full(&mut sink, &mut block).await.map_err(write)?;
            }
            block.put_i16(-1);
        }
    }
    if !block.is_empty() {
        sink.feed(block.freeze()).await.map_err(write)?;
    }
    sink.as_mut().finish().await.map_err(write)
}

/// Passes `block` on once it is full.
async fn feed_full(
    sink: &mut Pin<&mut CopyInSink<Bytes>>,
    block: &mut BytesMut,
) -> Result<(), tokio_postgres::Error> {
    if block.len() >= BLOCK {
        sink.feed(block.split().freeze()).await?;
    }
    Ok(())
}

/// One COPY of [`pipe_each`]: `out` (COPY TO) on the sending session into `into`
/// (COPY FROM) on the receiving one; `what` names it in errors.
pub struct Copy {
    pub out: String,
    pub into: String,
    pub what: String,
}

/// Runs `copies` from `from` into `to`, in order, pipelined: every COPY TO goes out
/// before the first row is read, so `from` streams the next table while `to` loads
/// this one, and a table costs `from` no round trip of its own. Returns the rows
/// each wrote. Safe only because `from` only sends and `to` only receives: a
/// session doing both would wait on itself.
pub async fn pipe_each(from: CopySide<'_>, to: CopySide<'_>, copies: &[Copy]) -> Result<Vec<u64>, DbError> {
    run_each((from.0, from.1, None), (to.0, to.1, None), copies).await
}

/// One end of [`pipe_rows_each`]: a [`CopySide`] and its prepared statements.
pub type PreparedSide<'a> = (&'a str, &'a Client, &'a Prepared);

/// [`pipe_each`] for queries: each `copies[i].out` is a query (not a COPY), prepared
/// once per connection in `from`'s cache, as is each COPY FROM in `to`'s. Its rows
/// go into the COPY FROM as binary tuples, which are what the query's binary
/// results hold (a DataRow and a binary COPY tuple have the same layout). Pipelined
/// like [`pipe_each`], and safe for the same reason.
pub async fn pipe_rows_each(
    from: PreparedSide<'_>,
    to: PreparedSide<'_>,
    copies: &[Copy],
) -> Result<Vec<u64>, DbError> {
    run_each((from.0, from.1, Some(from.2)), (to.0, to.1, Some(to.2)), copies).await
}

/// `sql` prepared on `client`: from `cache` when given, else for this use only.
async fn prepare(
    client: &Client,
    cache: Option<&Prepared>,
    sql: &str,
) -> Result<Statement, tokio_postgres::Error> {
    match cache {
        Some(cache) => cache.get(client, sql).await,
        None => client.prepare(sql).await,
    }
}

/// What one sending statement streams: a COPY TO's data, or a query's rows.
enum Out {
    Copy(CopyOutStream),
    Rows(RowStream),
}

/// [`pipe_each`] (no caches: each statement prepared for this run) or
/// [`pipe_rows_each`] (statements from the caches, queries sending rows).
async fn run_each(
    (from_db, from, from_cache): (&str, &Client, Option<&Prepared>),
    (to_db, to, to_cache): (&str, &Client, Option<&Prepared>),
    copies: &[Copy],
) -> Result<Vec<u64>, DbError> {
    let (outs, ins) = tokio::try_join!(
        try_join_all(copies.iter().map(|c| async {
            prepare(from, from_cache, &c.out)
                .await
                .map_err(|e| DbError::query(from_db, format!("read {}", c.what), e))
        })),
        try_join_all(copies.iter().map(|c| async {
            prepare(to, to_cache, &c.into)
                .await
                .map_err(|e| DbError::query(to_db, format!("write {}", c.what), e))
        })),
    )?;
    // A statement goes out on its future's first poll: each is polled once, in
    // order, so that the server runs them in this order.
    let no_params: [&(dyn ToSql + Sync); 0] = [];
    // Cached statements come from `pipe_rows_each`: queries, not COPY TOs.
    let rows_out = from_cache.is_some();
    let mut streams: Vec<_> = outs
        .iter()
        .map(|s| {
            maybe_done(Box::pin(async move {
                if rows_out {
                    from.query_raw(s, no_params).await.map(Out::Rows)
                } else {
                    from.copy_out(s).await.map(Out::Copy)
                }
            }))
        })
        .collect();
    poll_fn(|cx| {
        for s in streams.iter_mut() {
            let _ = Pin::new(s).poll(cx);
        }
        Poll::Ready(())
    })
    .await;
    let mut rows = Vec::with_capacity(copies.len());
    for ((copy, stream), into) in copies.iter().zip(streams.iter_mut()).zip(&ins) {
        (&mut *stream).await;
        let out = Pin::new(stream)
            .take_output()
            .expect("a finished statement has its output")
            .map_err(|e| DbError::query(from_db, format!("read {}", copy.what), e))?;
        let sink = to
            .copy_in::<_, Bytes>(into)
            .await
            .map_err(|e| DbError::query(to_db, format!("write {}", copy.what), e))?;
        rows.push(stream_into(out, sink, [from_db, to_db], &copy.what).await?);
    }
    Ok(rows)
}

/// The start of a binary COPY: its signature, no flags, no header extension.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Appends `row` as one binary COPY tuple: the field count, then each field's
/// length (-1 for NULL) and bytes.
fn put_tuple(block: &mut BytesMut, row: &Row) -> Result<(), tokio_postgres::Error> {
    block.put_i16(row.len() as i16);
    for i in 0..row.len() {
        match row.try_get::<_, Raw>(i)?.0 {
            Some(bytes) => {
                block.put_i32(bytes.len() as i32);
                block.extend_from_slice(bytes);
            }
            None => block.put_i32(-1),
        }
    }
    Ok(())
}

/// A column's value as the server sent it (binary), whatever its type.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}
