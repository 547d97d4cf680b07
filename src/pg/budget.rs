//! `max_connections_per_server`: how many connections belt-syncd may hold to one
//! server for work — receivers, copy workers, schema steps — beyond the one listening
//! connection each source database needs. Work that finds the budget spent waits for
//! a connection to close instead of failing on the server's `max_connections`; after
//! [`WAIT`] it gives up with an error that is retried.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::DbError;

/// How long a connect waits for the budget before it fails (and is retried).
pub const WAIT: Duration = Duration::from_secs(60);

/// The budget per server; 0 (the default outside the daemon): none.
static LIMIT: AtomicUsize = AtomicUsize::new(0);
static SERVERS: Mutex<Option<HashMap<String, Arc<Server>>>> = Mutex::new(None);

/// One server's budget, and how many connects wait for it.
struct Server {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// Sets the budget for every server from now on (belt-syncd, at start).
pub fn set_limit(per_server: usize) {
    LIMIT.store(per_server, Ordering::Relaxed);
}

fn server(key: &str, limit: usize) -> Arc<Server> {
    SERVERS
        .lock()
        .expect("budget lock")
        .get_or_insert_with(HashMap::new)
        .entry(key.to_string())
        .or_insert_with(|| {
            Arc::new(Server {
                permits: Arc::new(Semaphore::new(limit)),
                waiting: AtomicUsize::new(0),
            })
        })
        .clone()
}

/// The key of `spec`'s server in the budget: its first host and port.
pub fn server_of(spec: &super::DbSpec) -> String {
    let config = spec.config().unwrap_or_default();
    let (host, port) = super::dbspec::pgpass_host_port(&config);
    format!("{host}:{port}")
}

/// A place in `server`'s budget for one connection to database `db`, held until the
/// permit is dropped (with the connection); `None` when there is no budget. Waits
/// (first come, first served) up to [`WAIT`].
pub async fn acquire(server: &str, db: &str) -> Result<Option<OwnedSemaphorePermit>, DbError> {
    let limit = LIMIT.load(Ordering::Relaxed);
    if limit == 0 {
        return Ok(None);
    }
    let s = self::server(server, limit);
    if let Ok(permit) = s.permits.clone().try_acquire_owned() {
        return Ok(Some(permit));
    }
    tracing::debug!(%server, %db, limit, "connection budget spent: waiting");
    s.waiting.fetch_add(1, Ordering::Relaxed);
    let got = tokio::time::timeout(WAIT, s.permits.clone().acquire_owned()).await;
    s.waiting.fetch_sub(1, Ordering::Relaxed);
    match got {
        Ok(permit) => Ok(Some(permit.expect("budget semaphores are never closed"))),
        Err(_) => Err(DbError::Budget {
            db: db.to_string(),
            server: server.to_string(),
            limit,
        }),
    }
}

/// Whether work waits for `server`'s budget: a sync that holds a receiver there
/// between rounds then lets it go.
pub fn contended(server: &str) -> bool {
    let limit = LIMIT.load(Ordering::Relaxed);
    limit > 0 && self::server(server, limit).waiting.load(Ordering::Relaxed) > 0
}

/// Waits, as long as it takes, until `server`'s budget has room (outside any stall
/// deadline: waiting one's turn is not a stalled database).
pub async fn wait_for_room(server: &str) {
    let limit = LIMIT.load(Ordering::Relaxed);
    if limit == 0 {
        return;
    }
    let s = self::server(server, limit);
    s.waiting.fetch_add(1, Ordering::Relaxed);
    drop(s.permits.clone().acquire_owned().await);
    s.waiting.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spent_budget_queues_until_a_connection_closes() {
        set_limit(2);
        let key = "budget-test:1";
        let a = acquire(key, "a").await.unwrap();
        let _b = acquire(key, "b").await.unwrap();
        assert!(!contended(key));
        let third = tokio::spawn(async move { acquire(key, "c").await.unwrap().is_some() });
        while !contended(key) {
            tokio::task::yield_now().await;
        }
        assert!(!third.is_finished(), "the third waits");
        drop(a);
        assert!(third.await.unwrap(), "and gets the place the first gave back");
        set_limit(0);
    }
}
