//! The YAML configuration both programs read (`-c FILE` or `BELT_CONFIG`).
//!
//! Defaults work with no file at all. Parsing happens in [`Config::load`] only; an
//! unknown key, a wrong type or bad YAML is an error naming the file, line and column.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default control address (the control API comes with the service issue).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7543";
/// Default catalog file name, in `$STATE_DIRECTORY` or the current directory.
pub const DEFAULT_CATALOG: &str = "belt.db";
/// Default clock offset bound: conflicts closer together than this may go either way.
pub const DEFAULT_MAX_CLOCK_OFFSET_MS: f64 = 500.0;
/// Default number of syncs set up at once.
pub const DEFAULT_SETUP_JOBS: usize = 4;
/// Default number of tables copied at once.
pub const DEFAULT_COPY_JOBS: usize = 2;
/// Default budget of work connections per server: well below PostgreSQL's default
/// `max_connections` of 100, and enough for `setup_jobs` 4 × (1 + 2 × `copy_jobs` 2).
pub const DEFAULT_MAX_CONNECTIONS_PER_SERVER: usize = 20;
/// Default interval of the timer that covers a lost notification.
pub const DEFAULT_POLL_MS: u64 = 1000;

/// Default `round_interval_ms` (see README, Performance: chosen from CPU per change
/// against lag).
pub const DEFAULT_ROUND_INTERVAL_MS: u64 = 20;

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// belt's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Path of the SQLite catalog.
    #[serde(default = "default_catalog")]
    pub catalog: PathBuf,
    /// Control API address.
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub log_format: LogFormat,
    /// Milliseconds between timer polls for changes.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// Least milliseconds from the start of one round of a sync to the start of the
    /// next: the changes committed meanwhile go in one round. Higher spends less CPU
    /// per change under sustained load, for more lag.
    #[serde(default = "default_round_interval_ms")]
    pub round_interval_ms: u64,
    /// Apply a round as one transaction per side when its changes fit in `chunk_keys`
    /// and `chunk_bytes` (false: always in chunks, as belt did before; for comparing).
    #[serde(default = "default_true")]
    pub atomic_rounds: bool,
    /// Keys applied per chunk of a round.
    #[serde(default = "default_chunk_keys")]
    pub chunk_keys: i64,
    /// Bytes of rows per chunk of a round, by each table's estimated row size: tables
    /// of wide rows get chunks of fewer keys.
    #[serde(default = "default_chunk_bytes")]
    pub chunk_bytes: i64,
    /// Clock offset between a sync's databases above which each round warns, in ms.
    #[serde(default = "default_max_clock_offset_ms")]
    pub max_clock_offset_ms: f64,
    /// Tables (or parts of one) copied at once during a sync's initial copy.
    #[serde(default = "default_copy_jobs")]
    pub copy_jobs: usize,
    /// Syncs set up (schema, copy, indexes) at once; the others wait, `queued`.
    #[serde(default = "default_setup_jobs")]
    pub setup_jobs: usize,
    /// Rows per checkpointed chunk of the initial copy.
    #[serde(default = "default_copy_chunk_rows")]
    pub copy_chunk_rows: i64,
    /// Milliseconds one step (a chunk, a snapshot, a connect) may wait for a database
    /// that answers nothing, before its session is dropped and the step retried.
    #[serde(default = "default_stall_timeout_ms")]
    pub stall_timeout_ms: u64,
    /// Connections belt-syncd may hold to one server for work (receivers, copies,
    /// schema steps), beyond one listening connection per source database; more
    /// work waits for one to close. Copies never wait on each other when it is at
    /// least `setup_jobs × (1 + 2 × copy_jobs)`.
    #[serde(default = "default_max_connections_per_server")]
    pub max_connections_per_server: usize,
    /// When another daemon holds a sync (its lock on the sync's first source), try
    /// for the lock every 2 s and take the sync over once that daemon is gone; with
    /// `false`, stand by until `beltctl kick`.
    #[serde(default = "default_true")]
    pub takeover: bool,
    /// A plan file the daemon applies at start and on SIGHUP (`belt-syncd --plan`
    /// overrides it).
    pub plan: Option<PathBuf>,
    /// Run only the syncs of one shard: a number, or `ordinal` for the number that
    /// ends the host name (`belt-2` → 2, a StatefulSet's pod). `BELT_SHARD` in the
    /// environment overrides either. Absent: every sync, no shard needed.
    pub shard: Option<ShardSetting>,
}

/// Which shard of a fleet this daemon runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ShardSetting {
    Number(u32),
    /// `ordinal`: from the host name.
    Named(String),
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}{location}: {message}")]
    Parse {
        path: String,
        location: String,
        message: String,
    },
    #[error("shard: {0}")]
    Shard(String),
    #[error("config file {path}: {field}: {message}")]
    Invalid {
        path: String,
        field: &'static str,
        message: String,
    },
}

fn default_catalog() -> PathBuf {
    match std::env::var_os("STATE_DIRECTORY") {
        Some(dir) => Path::new(&dir).join(DEFAULT_CATALOG),
        None => PathBuf::from(DEFAULT_CATALOG),
    }
}

fn default_listen() -> String {
    DEFAULT_LISTEN.to_string()
}

fn default_poll_ms() -> u64 {
    DEFAULT_POLL_MS
}

fn default_round_interval_ms() -> u64 {
    DEFAULT_ROUND_INTERVAL_MS
}

fn default_max_clock_offset_ms() -> f64 {
    DEFAULT_MAX_CLOCK_OFFSET_MS
}

fn default_setup_jobs() -> usize {
    DEFAULT_SETUP_JOBS
}

fn default_copy_jobs() -> usize {
    DEFAULT_COPY_JOBS
}

fn default_copy_chunk_rows() -> i64 {
    crate::copy::DEFAULT_COPY_CHUNK_ROWS
}

fn default_stall_timeout_ms() -> u64 {
    crate::pg::deadline::DEFAULT_STALL_TIMEOUT.as_millis() as u64
}

fn default_chunk_keys() -> i64 {
    crate::engine::DEFAULT_CHUNK_KEYS
}

fn default_max_connections_per_server() -> usize {
    DEFAULT_MAX_CONNECTIONS_PER_SERVER
}

fn default_true() -> bool {
    true
}

fn default_chunk_bytes() -> i64 {
    crate::engine::DEFAULT_CHUNK_BYTES
}

impl Default for Config {
    fn default() -> Self {
        serde_yaml::from_str("{}").expect("defaults parse")
    }
}

impl Config {
    /// Loads `path` (or the defaults when `None`) and validates it.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let config = Config::parse(&text, &shown)?;
        config.validate(&shown)?;
        Ok(config)
    }

    fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            location: e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default(),
            message: e.to_string(),
        })
    }

    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| ConfigError::Invalid {
            path: path.to_string(),
            field,
            message: message.to_string(),
        };
        if let Err(e) = crate::api::Listen::parse(&self.listen) {
            return Err(invalid("listen", &e));
        }
        if self.poll_interval_ms == 0 {
            return Err(invalid("poll_interval_ms", "must be at least 1"));
        }
        if self.chunk_keys < 1 {
            return Err(invalid("chunk_keys", "must be at least 1"));
        }
        if self.chunk_bytes < 1 << 20 {
            return Err(invalid("chunk_bytes", "must be at least 1048576 (1 MiB)"));
        }
        if self.setup_jobs < 1 {
            return Err(invalid("setup_jobs", "must be at least 1"));
        }
        let copies = self.setup_jobs * (1 + 2 * self.copy_jobs);
        if self.max_connections_per_server < copies {
            return Err(invalid(
                "max_connections_per_server",
                &format!(
                    "must be at least setup_jobs × (1 + 2 × copy_jobs) = {copies}, so that set-ups never wait on each other's connections"
                ),
            ));
        }
        if self.copy_jobs < 1 {
            return Err(invalid("copy_jobs", "must be at least 1"));
        }
        if self.copy_chunk_rows < 1 {
            return Err(invalid("copy_chunk_rows", "must be at least 1"));
        }
        if self.stall_timeout_ms < 100 {
            return Err(invalid("stall_timeout_ms", "must be at least 100"));
        }
        if let Some(ShardSetting::Named(name)) = &self.shard {
            if name != "ordinal" {
                return Err(invalid("shard", "must be a number or `ordinal`"));
            }
        }
        Ok(())
    }

    /// The shard this process runs, if sharding is on: `BELT_SHARD`, else `shard:`
    /// (a number, or the ordinal that ends the host name).
    pub fn shard(&self) -> Result<Option<u32>, ConfigError> {
        if let Ok(value) = std::env::var("BELT_SHARD") {
            return value
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ConfigError::Shard(format!("BELT_SHARD='{value}' is not a shard number")));
        }
        match &self.shard {
            None => Ok(None),
            Some(ShardSetting::Number(n)) => Ok(Some(*n)),
            Some(ShardSetting::Named(_)) => {
                let host = hostname();
                ordinal(&host).map(Some).ok_or_else(|| {
                    ConfigError::Shard(format!(
                        "`ordinal` needs a host name ending in -N (a StatefulSet pod such as belt-2); this host is '{host}': set BELT_SHARD or a number"
                    ))
                })
            }
        }
    }

    /// The timer poll interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// The least time between the starts of two rounds of a sync.
    pub fn round_interval(&self) -> Duration {
        Duration::from_millis(self.round_interval_ms)
    }

    /// How long one step may wait for a silent database.
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_millis(self.stall_timeout_ms)
    }
}

/// The number after the last `-` of a host name: a StatefulSet pod's ordinal.
fn ordinal(host: &str) -> Option<u32> {
    host.rsplit_once('-')?.1.parse().ok()
}

/// How this process names itself as a sync's owner in `belt.syncs`: host name and
/// process id.
pub fn owner_name() -> String {
    format!("belt-syncd on {} (pid {})", hostname(), std::process::id())
}

/// This machine's host name (the pod's name in Kubernetes).
fn hostname() -> String {
    if let Ok(h) = std::env::var("HOSTNAME") {
        if !h.is_empty() {
            return h;
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pods_ordinal_is_its_shard() {
        assert_eq!(ordinal("belt-2"), Some(2));
        assert_eq!(ordinal("belt-fleet-12"), Some(12));
        assert_eq!(ordinal("belt"), None);
        assert_eq!(ordinal("belt-x"), None);
        let e = Config::parse("shard: primary\n", "belt.yaml")
            .unwrap()
            .validate("belt.yaml");
        assert!(e.unwrap_err().to_string().contains("shard"));
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let e = Config::parse("catalog: /tmp/x.db\nlisten_on: 1\n", "belt.yaml").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("belt.yaml:2:1"), "{text}");
        assert!(text.contains("listen_on"), "{text}");
    }

    #[test]
    fn defaults_without_file() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.log_format, LogFormat::Text);
    }
}
