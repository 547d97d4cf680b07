//! The supervisor's memory of sync tasks that ended without being asked to (a
//! panic): why, how often, and when the next start may be. A task that keeps dying
//! is started again after 0.5 s, 1 s, 2 s … up to 30 s, not twice a second forever,
//! and its status says why.

use std::collections::HashMap;
use std::time::Duration;

use tokio::task::JoinError;
use tokio::time::Instant;

/// First wait before a task that ended is started again.
const FIRST_DELAY: Duration = Duration::from_millis(500);
/// Longest wait.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// A task that ran this long before it ended starts its delays over.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Per sync: how many times in a row its task ended, and when it may start again.
#[derive(Debug, Default)]
pub struct Restarts {
    by_sync: HashMap<String, (u32, Instant)>,
}

impl Restarts {
    /// Records that `sync`'s task ended after running for `ran`; returns how many
    /// times in a row it has ended and how long until it starts again.
    pub fn ended(&mut self, sync: &str, ran: Duration) -> (u32, Duration) {
        let entry = self
            .by_sync
            .entry(sync.to_string())
            .or_insert((0, Instant::now()));
        if ran >= STABLE_AFTER {
            entry.0 = 0;
        }
        entry.0 += 1;
        let delay = delay(entry.0);
        entry.1 = Instant::now() + delay;
        (entry.0, delay)
    }

    /// Whether `sync`'s task may be started now.
    pub fn may_start(&self, sync: &str) -> bool {
        !self
            .by_sync
            .get(sync)
            .is_some_and(|(_, not_before)| Instant::now() < *not_before)
    }
}

/// The wait before the `n`th start in a row (n ≥ 1).
fn delay(n: u32) -> Duration {
    FIRST_DELAY.saturating_mul(1 << (n - 1).min(16)).min(MAX_DELAY)
}

/// Why a task ended, in words for the status: its panic message when it panicked.
pub fn why(ended: Result<(), JoinError>) -> String {
    match ended {
        Ok(()) => "sync task returned".into(),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            format!("sync task panicked: {message}")
        }
        Err(e) => format!("sync task cancelled: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_thirty_seconds_and_start_over_after_a_stable_run() {
        let mut r = Restarts::default();
        let delays: Vec<Duration> = (0..9).map(|_| r.ended("s", Duration::ZERO).1).collect();
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_secs(1));
        assert_eq!(delays[5], Duration::from_secs(16));
        assert_eq!(delays[8], Duration::from_secs(30));
        assert!(!r.may_start("s"));
        assert!(r.may_start("other"));
        assert_eq!(r.ended("s", STABLE_AFTER), (1, Duration::from_millis(500)));
    }

    #[tokio::test]
    async fn a_panic_is_told_by_its_message() {
        let ended = tokio::spawn(async { panic!("index out of bounds") }).await;
        assert_eq!(why(ended), "sync task panicked: index out of bounds");
        let ended = tokio::spawn(async { panic!("{} rows", 3) }).await;
        assert_eq!(why(ended), "sync task panicked: 3 rows");
    }
}
