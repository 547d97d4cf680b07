//! What the catalog stores, as plain structs shared by the daemon and beltctl.

use serde::Serialize;

/// Whether a database of a sync produces changes or only receives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Source,
    Target,
}

impl Role {
    /// The catalog's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Target => "target",
        }
    }

    /// Parses `source` or `target`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "source" => Some(Role::Source),
            "target" => Some(Role::Target),
            _ => None,
        }
    }
}

/// One database taking part in a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub db: String,
    pub role: Role,
}

/// A sync as defined by `beltctl add sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncDef {
    pub name: String,
    /// In the order given; the first database wins conflict ties.
    pub members: Vec<Member>,
    pub conflict: String,
    pub group: Option<String>,
    pub paused: bool,
    /// Bumped by `beltctl kick`; the daemon runs a round when it moves.
    pub kick_seq: i64,
}

impl SyncDef {
    /// The one source and one target of a one-way sync.
    pub fn one_way(&self) -> Option<(&str, &str)> {
        let src = self.members.iter().find(|m| m.role == Role::Source)?;
        let dst = self.members.iter().find(|m| m.role == Role::Target)?;
        Some((&src.db, &dst.db))
    }
}

/// What the daemon last reported about a sync.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncStatus {
    /// `starting`, `replicating`, `retrying`, `failed`, `paused`, `stopped`.
    pub state: String,
    pub last_error: Option<String>,
    pub rounds: i64,
    pub rows_applied: i64,
    /// Changed keys captured on the source and not applied yet.
    pub pending_rows: i64,
    /// Age of the oldest pending change, in seconds (0 when nothing is pending).
    pub lag_seconds: f64,
    pub last_round_at: Option<String>,
    /// The highest `kick_seq` a finished round has answered.
    pub kick_done: i64,
    pub updated_at: Option<String>,
}
