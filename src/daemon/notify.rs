//! The systemd notify protocol, by hand (a datagram to `$NOTIFY_SOCKET`): READY=1 once
//! the catalog is open, WATCHDOG=1 from the supervisor loop while it is healthy,
//! STOPPING=1 on SIGTERM. Without `$NOTIFY_SOCKET` (not under systemd) it does nothing.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where and how often to tell systemd how the daemon is.
pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
    watchdog: Option<Duration>,
    last_pet: Instant,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (when `$WATCHDOG_PID` is ours or unset).
    pub fn from_env() -> Notifier {
        let socket = std::env::var("NOTIFY_SOCKET")
            .ok()
            .and_then(|path| UnixDatagram::unbound().ok().map(|s| (s, path)));
        let ours = std::env::var("WATCHDOG_PID")
            .map(|p| p == std::process::id().to_string())
            .unwrap_or(true);
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|_| ours && socket.is_some())
            .map(|usec| Duration::from_micros(usec) / 2);
        Notifier {
            socket,
            watchdog,
            last_pet: Instant::now(),
        }
    }

    /// Sends one state line (`READY=1`, `STOPPING=1`, …); failures are logged, not fatal.
    pub fn send(&self, state: &str) {
        let Some((socket, path)) = &self.socket else {
            return;
        };
        let result = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
            }
            None => socket.send_to(state.as_bytes(), PathBuf::from(path)),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, state, "cannot notify systemd");
        }
    }

    /// Pets the watchdog when half its interval has passed.
    pub fn pet_if_due(&mut self) {
        if let Some(every) = self.watchdog {
            if self.last_pet.elapsed() >= every {
                self.send("WATCHDOG=1");
                self.last_pet = Instant::now();
            }
        }
    }

    /// How long the supervisor may sleep between pets.
    pub fn interval(&self) -> Option<Duration> {
        self.watchdog
    }
}
