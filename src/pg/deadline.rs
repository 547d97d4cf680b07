//! A limit on how long belt waits for a database that answers nothing.
//!
//! A dead route, a dropped VPN or a stuck middlebox can leave a TCP session open
//! with nothing coming back; the kernel may not notice for many minutes, and a
//! proxy in between never lets it notice. Every step of the daemon's work on a
//! database runs under this limit, so a stalled session is dropped and the work
//! retried on a fresh one.

use std::future::Future;
use std::time::Duration;

use super::DbError;

/// Default limit: long enough for the largest chunk, short enough to recover from a
/// network outage within a minute.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The name to give [`within`] for a step that waits on either of two databases:
/// the message then reads "database 'a' or 'b' answered nothing".
pub fn either(a: &str, b: &str) -> String {
    format!("{a}' or '{b}")
}

/// Runs `step` on database `db`; when it takes longer than `limit`, gives up with
/// [`DbError::Stalled`] naming `what` belt was doing.
pub async fn within<T, E: From<DbError>>(
    limit: Duration,
    db: &str,
    what: &str,
    step: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    match tokio::time::timeout(limit, step).await {
        Ok(result) => result,
        Err(_) => Err(DbError::Stalled {
            db: db.to_string(),
            what: what.to_string(),
            secs: limit.as_secs_f64(),
        }
        .into()),
    }
}
