//! Streams the output of a `COPY … TO STDOUT` on one session into a
//! `COPY … FROM STDIN` on another, chunk by chunk, so memory stays flat however
//! many rows move.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use futures_util::future::{maybe_done, try_join_all};
use futures_util::{pin_mut, SinkExt, TryStreamExt};
use tokio_postgres::{Client, CopyInSink, CopyOutStream};

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
    stream_into(out, sink, [from_db, to_db], what).await
}

/// Streams one COPY TO into one COPY FROM; returns the rows written.
async fn stream_into(
    out: CopyOutStream,
    sink: CopyInSink<Bytes>,
    [from_db, to_db]: [&str; 2],
    what: &str,
) -> Result<u64, DbError> {
    pin_mut!(out);
    pin_mut!(sink);
    // COPY TO sends one message per row. Rows are gathered into blocks before they
    // go on (a COPY stream may be cut anywhere), so the receiving side handles one
    // message per block instead of one per row; and fed, not sent, so the sink
    // flushes when its own buffer fills rather than after every block.
    let mut block = BytesMut::with_capacity(BLOCK);
    while let Some(chunk) = out
        .try_next()
        .await
        .map_err(|e| DbError::query(from_db, format!("read {what}"), e))?
    {
        block.extend_from_slice(&chunk);
        if block.len() >= BLOCK {
            sink.feed(block.split().freeze())
                .await
                .map_err(|e| DbError::query(to_db, format!("write {what}"), e))?;
        }
    }
    if !block.is_empty() {
        sink.feed(block.freeze())
            .await
            .map_err(|e| DbError::query(to_db, format!("write {what}"), e))?;
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(|e| DbError::query(to_db, format!("write {what}"), e))
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
pub async fn pipe_each(
    (from_db, from): CopySide<'_>,
    (to_db, to): CopySide<'_>,
    copies: &[Copy],
) -> Result<Vec<u64>, DbError> {
    let (outs, ins) = tokio::try_join!(
        try_join_all(copies.iter().map(|c| async {
            from.prepare(&c.out)
                .await
                .map_err(|e| DbError::query(from_db, format!("read {}", c.what), e))
        })),
        try_join_all(copies.iter().map(|c| async {
            to.prepare(&c.into)
                .await
                .map_err(|e| DbError::query(to_db, format!("write {}", c.what), e))
        })),
    )?;
    // A COPY TO of a prepared statement goes out on its future's first poll: each
    // is polled once, in order, so that the server runs them in this order.
    let mut streams: Vec<_> = outs
        .iter()
        .map(|s| maybe_done(Box::pin(from.copy_out(s))))
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
            .expect("a finished COPY TO has its output")
            .map_err(|e| DbError::query(from_db, format!("read {}", copy.what), e))?;
        let sink = to
            .copy_in::<_, Bytes>(into)
            .await
            .map_err(|e| DbError::query(to_db, format!("write {}", copy.what), e))?;
        rows.push(stream_into(out, sink, [from_db, to_db], &copy.what).await?);
    }
    Ok(rows)
}
