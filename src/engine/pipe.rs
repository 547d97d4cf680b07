//! Streams the output of a `COPY … TO STDOUT` on one session into a
//! `COPY … FROM STDIN` on another, chunk by chunk, so memory stays flat however
//! many rows move.

use bytes::{Bytes, BytesMut};
use futures_util::{pin_mut, SinkExt, TryStreamExt};
use tokio_postgres::Client;

use crate::pg::DbError;

/// Bytes gathered before they are passed to the receiving side.
const BLOCK: usize = 64 * 1024;

/// One end of a pipe: which database, which session, which statement.
pub struct CopyEnd<'a> {
    pub db: &'a str,
    pub client: &'a Client,
    pub sql: String,
}

/// Runs `from` (COPY TO STDOUT) into `to` (COPY FROM STDIN); returns rows written.
pub async fn pipe(from: CopyEnd<'_>, to: CopyEnd<'_>, what: &str) -> Result<u64, DbError> {
    // Both ends start at once: one round trip, not two.
    let (out, sink) = tokio::try_join!(
        async {
            from.client
                .copy_out(from.sql.as_str())
                .await
                .map_err(|e| DbError::query(from.db, format!("read {what}"), e))
        },
        async {
            to.client
                .copy_in::<_, Bytes>(to.sql.as_str())
                .await
                .map_err(|e| DbError::query(to.db, format!("write {what}"), e))
        },
    )?;
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
        .map_err(|e| DbError::query(from.db, format!("read {what}"), e))?
    {
        block.extend_from_slice(&chunk);
        if block.len() >= BLOCK {
            sink.feed(block.split().freeze())
                .await
                .map_err(|e| DbError::query(to.db, format!("write {what}"), e))?;
        }
    }
    if !block.is_empty() {
        sink.feed(block.freeze())
            .await
            .map_err(|e| DbError::query(to.db, format!("write {what}"), e))?;
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(|e| DbError::query(to.db, format!("write {what}"), e))
}
