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

/// One server's budget, how many connects wait for it, and how many work
/// connections to it are open.
struct Server {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    open: AtomicUsize,
}

/// One open work connection's place: counted while it lives, and its permit of the
/// budget when there is one.
pub struct Slot {
    server: Arc<Server>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.server.open.fetch_sub(1, Ordering::Relaxed);
    }
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
                permits: Arc::new(Semaphore::new(limit.max(1))),
                waiting: AtomicUsize::new(0),
                open: AtomicUsize::new(0),
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
/// slot is dropped (with the connection). Waits (first come, first served) up to
/// [`WAIT`] when the budget is spent; without a budget, counts the connection only.
pub async fn acquire(server: &str, db: &str) -> Result<Slot, DbError> {
    let limit = LIMIT.load(Ordering::Relaxed);
    let s = self::server(server, limit);
    let permit = if limit == 0 {
        None
    } else if let Ok(permit) = s.permits.clone().try_acquire_owned() {
        Some(permit)
    } else {
        tracing::debug!(%server, %db, limit, "connection budget spent: waiting");
        s.waiting.fetch_add(1, Ordering::Relaxed);
        let got = tokio::time::timeout(WAIT, s.permits.clone().acquire_owned()).await;
        s.waiting.fetch_sub(1, Ordering::Relaxed);
        match got {
            Ok(permit) => Some(permit.expect("budget semaphores are never closed")),
            Err(_) => {
                return Err(DbError::Budget {
                    db: db.to_string(),
                    server: server.to_string(),
                    limit,
                })
            }
        }
    };
    s.open.fetch_add(1, Ordering::Relaxed);
    Ok(Slot {
        server: s,
        _permit: permit,
    })
}

/// Work connections open now, per server (`host:port`), for `/metrics`.
pub fn open_connections() -> Vec<(String, usize)> {
    SERVERS
        .lock()
        .expect("budget lock")
        .as_ref()
        .map(|m| {
            m.iter()
                .map(|(k, s)| (k.clone(), s.open.load(Ordering::Relaxed)))
                .collect()
        })
        .unwrap_or_default()
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
        let third = tokio::spawn(async move { acquire(key, "c").await.map(drop).is_ok() });
        while !contended(key) {
            tokio::task::yield_now().await;
        }
        assert!(!third.is_finished(), "the third waits");
        drop(a);
        assert!(third.await.unwrap(), "and gets the place the first gave back");
        let open = open_connections().into_iter().find(|(k, _)| k == key).unwrap().1;
        assert_eq!(open, 1, "b is open; a and c are closed");
        set_limit(0);
    }
}
