//! Statements prepared once per connection. What a round runs every time with the
//! same text (the column check, the key and pending counts) is planned once, not
//! once per round: under load, planning them was a millisecond of the source's CPU
//! per round.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio_postgres::{Client, Statement};

/// Statements that stay prepared after this many are dropped, all at once (a sync's
/// statements are a few per table; a replanned table leaves its old ones behind).
const MAX_STATEMENTS: usize = 256;

/// The prepared statements of one connection, by their text.
#[derive(Debug, Default)]
pub struct Prepared(Mutex<HashMap<String, Statement>>);

impl Prepared {
    /// `sql` prepared on `client`: the cached statement, or prepared now. Must be
    /// given the same client every time.
    pub async fn get(&self, client: &Client, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.lock().get(sql) {
            return Ok(s.clone());
        }
        let statement = client.prepare(sql).await?;
        let mut cache = self.lock();
        if cache.len() >= MAX_STATEMENTS {
            cache.clear();
        }
        cache.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Statement>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
