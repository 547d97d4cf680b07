//! Whether the capture triggers notify: only while a daemon waits for them.
//!
//! A transaction that NOTIFYs takes a cluster-wide lock before it commits and holds
//! it until the commit is flushed, so every notifying transaction of the server
//! commits alone: no group commit, on every database of the cluster. Under load a
//! sync's rounds follow one another without a wake-up, so a sync registers in
//! `belt.listeners` only while it waits, and the triggers look there first.

use tokio_postgres::Client;

use super::KICK_CHANNEL;
use crate::pg::quote::literal;
use crate::pg::DbError;

/// Starts (`on`) or stops waiting for the triggers' notifications on one source:
/// LISTEN and the sync's row in `belt.listeners` in one transaction, so the row is
/// never seen before the session listens. A transaction whose trigger ran before the
/// row was committed does not notify: the caller looks for changes after starting
/// to wait.
pub async fn wait(client: &Client, db: &str, sync: &str, on: bool) -> Result<(), DbError> {
    let sql = if on {
        format!(
            "begin; listen {KICK_CHANNEL}; insert into belt.listeners (sync) values ({s}) \
             on conflict (sync) do update set since = now(); commit",
            s = literal(sync)
        )
    } else {
        format!(
            "begin; delete from belt.listeners where sync = {s}; unlisten {KICK_CHANNEL}; commit",
            s = literal(sync)
        )
    };
    let what = if on {
        "listen for changes"
    } else {
        "stop listening for changes"
    };
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| DbError::query(db, what, e))
}

/// Removes `sync`'s row (teardown of a sync whose database other syncs still use),
/// on a database whose capture may predate `belt.listeners`.
pub async fn forget(client: &Client, db: &str, sync: &str) -> Result<(), DbError> {
    let exists: bool = client
        .query_one("select to_regclass('belt.listeners') is not null", &[])
        .await
        .map_err(|e| DbError::query(db, "look for belt.listeners", e))?
        .get(0);
    if exists {
        client
            .execute("delete from belt.listeners where sync = $1", &[&sync])
            .await
            .map_err(|e| DbError::query(db, "remove the sync from belt.listeners", e))?;
    }
    Ok(())
}
