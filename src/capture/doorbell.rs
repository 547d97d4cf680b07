//! Whether the capture triggers notify: only while a daemon waits for them.
//!
//! A transaction that NOTIFYs takes a cluster-wide lock before it commits and holds
//! it until the commit is flushed, so every notifying transaction of the server
//! commits alone: no group commit, on every database of the cluster. Under load a
//! sync's rounds follow one another without a wake-up, so a sync registers in
//! `belt.listeners` only while it waits, and the triggers look there first. The
//! registration is a lease the waiting daemon renews ([`renew`]): a sync paused, or
//! a daemon gone, stops making the application's commits notify when it runs out.

use std::time::Duration;

use tokio_postgres::Client;

use super::KICK_CHANNEL;
use crate::pg::quote::literal;
use crate::pg::DbError;

/// Starts (`on`) or stops waiting for the triggers' notifications on one source:
/// LISTEN and the sync's row in `belt.listeners`, leased for `lease`, in one
/// transaction, so the row is never seen before the session listens. A transaction
/// whose trigger ran before the row was committed does not notify: the caller looks
/// for changes after starting to wait.
pub async fn wait(client: &Client, db: &str, sync: &str, on: bool, lease: Duration) -> Result<(), DbError> {
    let (sql, what) = if on {
        (
            format!(
                "begin; listen {KICK_CHANNEL}; {}; commit",
                upsert(sync, lease, None)
            ),
            "listen for changes",
        )
    } else {
        (
            format!(
                "begin; delete from belt.listeners where sync = {}; unlisten {KICK_CHANNEL}; commit",
                literal(sync)
            ),
            "stop listening for changes",
        )
    };
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| DbError::query(db, what, e))
}

/// Extends a waiting sync's lease to `lease` from now once half of it is spent, and
/// writes the row again if it is gone. A row with time left is only read: no write,
/// no row lock, per look for changes.
pub async fn renew(client: &Client, db: &str, sync: &str, lease: Duration) -> Result<(), DbError> {
    client
        .batch_execute(&upsert(sync, lease, Some(lease / 2)))
        .await
        .map_err(|e| DbError::query(db, "renew the wait for changes", e))
}

/// The statement that writes `sync`'s row with a lease of `lease` from now; with
/// `unless_left`, only when less than that is left (an ON CONFLICT whose condition
/// fails still locks the row, so the check comes before the insert).
fn upsert(sync: &str, lease: Duration, unless_left: Option<Duration>) -> String {
    let ms = |d: Duration| format!("interval '{} milliseconds'", d.as_millis());
    let s = literal(sync);
    let guard = unless_left
        .map(|d| {
            format!(
                " where not exists (select 1 from belt.listeners where sync = {s} and until >= now() + {})",
                ms(d)
            )
        })
        .unwrap_or_default();
    format!(
        "insert into belt.listeners (sync, until) select {s}, now() + {}{guard} \
         on conflict (sync) do update set until = excluded.until",
        ms(lease),
    )
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

/// The lease of a waiting sync with the default `poll_interval_ms` (1 s): three of
/// its longest waits between looks for changes (ten intervals, once long idle).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
