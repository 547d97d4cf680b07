//! Keeps the delta tables small while changes stream through them.
//!
//! Every round deletes the deltas it applied, and every later scan of the delta table
//! (the round's key count, the summaries, the purge, the pending count) reads those
//! dead rows again until VACUUM removes them. Autovacuum comes to a database at most
//! once per `autovacuum_naptime` (a minute by default): at thousands of changes a
//! second the deltas grow to tens of thousands of dead rows, and the rounds spent
//! most of their time on the source reading them. So belt vacuums a delta table
//! itself once its purges have deleted [`VACUUM_AFTER`] rows. It owns the delta
//! tables, so it may. The vacuum skips a table whose lock another vacuum holds, and
//! never cuts empty pages off the table's end: that needs an exclusive lock, which
//! VACUUM waits up to 5 s for while the application's triggers keep inserting, and a
//! round waited with it (seen in `cargo bench --bench cpu`: rounds of 5 s). Both
//! options need PostgreSQL 12; before that, belt leaves the deltas to autovacuum. A
//! vacuum that fails is only logged (the next one tries again).

use std::collections::HashMap;

use tokio_postgres::Client;

/// Rows purged from one delta table after which belt vacuums it.
pub const VACUUM_AFTER: u64 = 2_000;

/// Rows purged from each delta table of one database since its last vacuum.
#[derive(Debug, Default)]
pub struct Purged {
    rows: HashMap<String, u64>,
    /// The server refused the vacuum's options (before PostgreSQL 12).
    unsupported: bool,
}

impl Purged {
    /// Counts `rows` deleted from `delta` (its quoted name).
    pub fn add(&mut self, delta: &str, rows: u64) {
        *self.rows.entry(delta.to_string()).or_default() += rows;
    }

    /// Vacuums the delta tables due for it, and starts counting them again.
    pub async fn vacuum_due(&mut self, client: &Client, db: &str) {
        if self.unsupported {
            return;
        }
        let due: Vec<String> = self
            .rows
            .iter()
            .filter(|(_, &n)| n >= VACUUM_AFTER)
            .map(|(t, _)| t.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        for t in &due {
            self.rows.remove(t);
        }
        let list = due.join(", ");
        let vacuum = client
            .batch_execute(&format!("vacuum (skip_locked, truncate false) {list}"))
            .await;
        match vacuum {
            Ok(()) => {}
            // 42601: PostgreSQL 10 and 11 know neither option.
            Err(e) if e.code().map(|c| c.code()) == Some("42601") => self.unsupported = true,
            Err(e) => tracing::warn!(%db, tables = %list, error = %e, "vacuum of delta tables failed"),
        }
    }
}
