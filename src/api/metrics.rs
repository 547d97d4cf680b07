//! Prometheus metrics: names are constants, described once when the recorder is
//! installed; the sync tasks record after every round. Never a secret in a label.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::catalog::DirectionStatus;

pub const ROUNDS: &str = "belt_rounds_total";
pub const ROUND_SECONDS: &str = "belt_round_duration_seconds";
pub const ROWS_APPLIED: &str = "belt_rows_applied_total";
pub const LAG_SECONDS: &str = "belt_lag_seconds";
pub const PENDING_ROWS: &str = "belt_pending_rows";
pub const CONFLICTS: &str = "belt_conflicts_total";
pub const PARKED: &str = "belt_parked_rows_total";
pub const ERRORS: &str = "belt_errors_total";
pub const COPIED_ROWS: &str = "belt_copy_rows_total";
pub const COPY_ROWS_DONE: &str = "belt_copy_rows_done";
pub const COPY_ROWS_ESTIMATED: &str = "belt_copy_rows_estimated";
pub const TASK_RESTARTS: &str = "belt_sync_task_restarts_total";
pub const SERVER_CONNECTIONS: &str = "belt_server_connections";

/// Installs the process-wide recorder; `None` when one is installed already (a second
/// daemon in the same process, as in the demo).
pub fn install() -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(ROUND_SECONDS.into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )
        .ok()?
        .install_recorder()
        .ok()?;
    describe_counter!(ROUNDS, "Rounds finished, per sync.");
    describe_histogram!(ROUND_SECONDS, "Duration of finished rounds, per sync.");
    describe_counter!(
        ROWS_APPLIED,
        "Rows written into a database, per sync and direction."
    );
    describe_gauge!(
        LAG_SECONDS,
        "Age of the oldest change not applied yet, per sync and direction."
    );
    describe_gauge!(
        PENDING_ROWS,
        "Changes captured and not applied yet, per sync and direction."
    );
    describe_counter!(
        CONFLICTS,
        "Keys changed on both databases and resolved, per sync."
    );
    describe_counter!(PARKED, "Rows parked because they could not be applied, per sync.");
    describe_counter!(ERRORS, "Failed rounds and connections, per sync.");
    describe_counter!(COPIED_ROWS, "Rows moved by initial copies, per sync.");
    describe_gauge!(
        COPY_ROWS_DONE,
        "Rows of the running initial copy done so far, checkpoints before a restart included, per sync."
    );
    describe_gauge!(
        COPY_ROWS_ESTIMATED,
        "Rows the running initial copy is estimated to move in all (from the planner's statistics), per sync."
    );
    describe_counter!(
        TASK_RESTARTS,
        "Sync tasks that ended without being stopped (a panic) and were started again, per sync."
    );
    describe_gauge!(
        SERVER_CONNECTIONS,
        "Work connections belt-syncd holds per server (receivers, copies, schema steps; not the listening ones), within max_connections_per_server."
    );
    Some(handle)
}

/// Sets the per-server connection gauges from the budget's counts (at each scrape).
pub fn server_connections() {
    for (server, open) in crate::pg::budget::open_connections() {
        gauge!(SERVER_CONNECTIONS, "server" => server).set(open as f64);
    }
}

/// Records a finished round.
pub fn round(
    sync: &str,
    took: Duration,
    rows_into: [(String, u64); 2],
    directions: &[DirectionStatus],
    conflicts: usize,
    parked: usize,
) {
    let s = sync.to_string();
    counter!(ROUNDS, "sync" => s.clone()).increment(1);
    histogram!(ROUND_SECONDS, "sync" => s.clone()).record(took.as_secs_f64());
    for (db, rows) in rows_into {
        counter!(ROWS_APPLIED, "sync" => s.clone(), "into" => db).increment(rows);
    }
    for d in directions {
        let labels = [
            ("sync", s.clone()),
            ("from", d.from.clone()),
            ("to", d.to.clone()),
        ];
        gauge!(LAG_SECONDS, &labels).set(d.lag_seconds);
        gauge!(PENDING_ROWS, &labels).set(d.pending_rows as f64);
    }
    counter!(CONFLICTS, "sync" => s.clone()).increment(conflicts as u64);
    counter!(PARKED, "sync" => s).increment(parked as u64);
}

/// Records a failed round or connection.
pub fn error(sync: &str) {
    counter!(ERRORS, "sync" => sync.to_string()).increment(1);
}

/// Records a sync task started again after it ended on its own.
pub fn task_restart(sync: &str) {
    counter!(TASK_RESTARTS, "sync" => sync.to_string()).increment(1);
}

/// Records a copy's plan: rows already done (checkpointed) and estimated in all.
pub fn copy_planned(sync: &str, done: u64, estimated: u64) {
    gauge!(COPY_ROWS_DONE, "sync" => sync.to_string()).set(done as f64);
    gauge!(COPY_ROWS_ESTIMATED, "sync" => sync.to_string()).set(estimated as f64);
}

/// Records rows moved by a copy chunk.
pub fn copied(sync: &str, rows: u64) {
    counter!(COPIED_ROWS, "sync" => sync.to_string()).increment(rows);
    gauge!(COPY_ROWS_DONE, "sync" => sync.to_string()).increment(rows as f64);
}
