//! Clock offset between the two databases of a sync.
//!
//! Conflicts are decided by `clock_timestamp()` of each server (rule 4), so a clock
//! that runs ahead makes its writes win. Each round measures the offset (second minus
//! first, half the round trip compensated) so status can show it and the daemon can
//! warn when it exceeds the configured bound.

use std::time::{SystemTime, UNIX_EPOCH};

use super::Side;
use crate::pg::DbError;

/// The second side's clock minus the first's, in milliseconds.
pub async fn offset_ms(sides: &[Side; 2]) -> Result<f64, DbError> {
    Ok(sample(&sides[1]).await? - sample(&sides[0]).await?)
}

/// The server's clock minus the local clock at the midpoint of the query, in ms.
async fn sample(side: &Side) -> Result<f64, DbError> {
    let before = now_ms();
    let server: f64 = side
        .client
        .query_one("select extract(epoch from clock_timestamp())::float8 * 1000", &[])
        .await
        .map_err(|e| DbError::query(&side.db, "read clock", e))?
        .get(0);
    let after = now_ms();
    Ok(server - (before + after) / 2.0)
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}
