//! Statements prepared once per connection. What a round runs every time with the
//! same text (the column check, the key and pending counts, each table's winning
//! rows, apply and purge) is planned once, not once per round: under load, planning
//! them was a millisecond of the source's CPU per round.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio_postgres::{Client, Statement};

/// Statements kept prepared per connection. A sync's statements are a few per table
/// (up to six on a side that both sends and receives), and a replanned table leaves
/// its old ones behind; each holds a plan in the server's backend.
const MAX_STATEMENTS: usize = 256;

/// The prepared statements of one connection, by their text.
#[derive(Debug, Default)]
pub struct Prepared(Mutex<Cache<Statement>>);

impl Prepared {
    /// `sql` prepared on `client`: the cached statement, or prepared now. Must be
    /// given the same client every time.
    pub async fn get(&self, client: &Client, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.lock().get(sql) {
            return Ok(s);
        }
        let statement = client.prepare(sql).await?;
        self.lock().insert(sql, statement.clone());
        Ok(statement)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache<Statement>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Values by statement text, each with when it was last used (a tick of [`CLOCK`]).
#[derive(Debug)]
struct Cache<T> {
    entries: HashMap<String, (T, u64)>,
}

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Cache {
            entries: HashMap::new(),
        }
    }
}

/// Orders uses of every cache in the process.
static CLOCK: AtomicU64 = AtomicU64::new(0);

fn tick() -> u64 {
    CLOCK.fetch_add(1, Ordering::Relaxed)
}

impl<T: Clone> Cache<T> {
    fn get(&mut self, sql: &str) -> Option<T> {
        let (value, used) = self.entries.get_mut(sql)?;
        *used = tick();
        Some(value.clone())
    }

    /// Adds `value`. When full, the least recently used quarter goes first (a
    /// statement is closed on the server when its last handle drops): a sync with
    /// more tables than fit keeps its busiest ones prepared.
    fn insert(&mut self, sql: &str, value: T) {
        if self.entries.len() >= MAX_STATEMENTS {
            let mut used: Vec<u64> = self.entries.values().map(|(_, u)| *u).collect();
            used.sort_unstable();
            let cut = used[MAX_STATEMENTS / 4];
            self.entries.retain(|_, (_, u)| *u > cut);
        }
        self.entries.insert(sql.to_string(), (value, tick()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_drops_its_least_recently_used_quarter() {
        let mut cache = Cache::default();
        for i in 0..MAX_STATEMENTS {
            cache.insert(&format!("s{i}"), i);
        }
        // The oldest ten are used again: they stay.
        for i in 0..10 {
            assert_eq!(cache.get(&format!("s{i}")), Some(i));
        }
        cache.insert("new", 0);
        assert_eq!(cache.entries.len(), MAX_STATEMENTS - MAX_STATEMENTS / 4);
        assert!((0..10).all(|i| cache.entries.contains_key(&format!("s{i}"))));
        assert!(!cache.entries.contains_key("s10"), "the least recently used go");
        assert!(cache.entries.contains_key(&format!("s{}", MAX_STATEMENTS - 1)));
        assert_eq!(cache.get("new"), Some(0));
    }
}
