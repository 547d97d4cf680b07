//! Streams the output of a `COPY … TO STDOUT` on one session into a
//! `COPY … FROM STDIN` on another, chunk by chunk, so memory stays flat however
//! many rows move.

use bytes::Bytes;
use futures_util::{pin_mut, SinkExt, TryStreamExt};
use tokio_postgres::Client;

use crate::pg::DbError;

/// One end of a pipe: which database, which session, which statement.
pub struct CopyEnd<'a> {
    pub db: &'a str,
    pub client: &'a Client,
    pub sql: String,
}

/// Runs `from` (COPY TO STDOUT) into `to` (COPY FROM STDIN); returns rows written.
pub async fn pipe(from: CopyEnd<'_>, to: CopyEnd<'_>, what: &str) -> Result<u64, DbError> {
    let out = from
        .client
        .copy_out(from.sql.as_str())
        .await
        .map_err(|e| DbError::query(from.db, format!("read {what}"), e))?;
    let sink = to
        .client
        .copy_in::<_, Bytes>(to.sql.as_str())
        .await
        .map_err(|e| DbError::query(to.db, format!("write {what}"), e))?;
    pin_mut!(out);
    pin_mut!(sink);
    while let Some(chunk) = out
        .try_next()
        .await
        .map_err(|e| DbError::query(from.db, format!("read {what}"), e))?
    {
        // feed, not send: COPY TO sends one message per row, and flushing each one
        // through the connection costs ten times the copy itself. The sink flushes
        // by itself when its buffer fills, and at finish.
        sink.feed(chunk)
            .await
            .map_err(|e| DbError::query(to.db, format!("write {what}"), e))?;
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(|e| DbError::query(to.db, format!("write {what}"), e))
}
