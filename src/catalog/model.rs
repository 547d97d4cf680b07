//! What the catalog stores, as plain structs shared by the daemon and beltctl.

use serde::Serialize;

use super::states::{CopyState, Role, SyncState};

/// Which of a sync's two databases is copied and verified from: the first source.
pub fn first_source(sources: [bool; 2]) -> usize {
    if sources[0] {
        0
    } else {
        1
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
    pub conflict: crate::engine::Strategy,
    pub group: Option<String>,
    pub paused: bool,
    /// Bumped by `beltctl kick`; the daemon runs a round when it moves.
    pub kick_seq: i64,
    /// How far its set-up got.
    pub copy: CopyState,
    /// Added with `--tables all`: tables created later are picked up. `Some("")`
    /// follows every schema, `Some(schema)` one schema, `None` the listed tables only.
    pub tables_all: Option<String>,
    /// The shard (daemon) that runs it when the fleet is sharded; set by the plan.
    pub shard: Option<u32>,
}

impl SyncDef {
    /// The sync's two databases, in order, when its members make a valid sync: two
    /// databases, at least one of them a source.
    pub fn pair(&self) -> Result<[&Member; 2], super::CatalogError> {
        let problem = match self.members.as_slice() {
            [a, b] if a.role == Role::Source || b.role == Role::Source => return Ok([a, b]),
            [_, _] => "at least one database must be a source (A:source,B:target or A:source,B:source)",
            _ => "a sync has exactly two databases (A:source,B:target or A:source,B:source)",
        };
        Err(super::CatalogError::InvalidSync {
            sync: self.name.clone(),
            problem,
        })
    }
}

/// A sync's two databases, in the sync's order, with their connection settings: what
/// every workflow on a sync starts from.
#[derive(Debug, Clone)]
pub struct DbPair {
    pub members: [Member; 2],
    pub specs: [crate::pg::DbSpec; 2],
}

impl DbPair {
    /// Which of the two databases are sources.
    pub fn sources(&self) -> [bool; 2] {
        [0, 1].map(|i| self.members[i].role == Role::Source)
    }
}

/// What the daemon last reported about a sync.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncStatus {
    pub state: SyncState,
    /// The error that stops or slows the sync now; cleared by the next good round.
    pub last_error: Option<String>,
    /// Errors reported since the sync was added, and when the newest was: an outage
    /// the sync recovered from stays visible here.
    pub errors: i64,
    pub last_error_at: Option<String>,
    pub rounds: i64,
    pub rows_applied: i64,
    /// Changed keys captured on the sources and not applied yet.
    pub pending_rows: i64,
    /// Age of the oldest pending change, in seconds (0 when nothing is pending).
    pub lag_seconds: f64,
    /// Pending rows and lag of each direction.
    pub directions: Vec<DirectionStatus>,
    /// Clock of the second database minus the first's, in milliseconds.
    pub clock_offset_ms: Option<f64>,
    /// Conflicts resolved since the sync was added.
    pub conflicts: i64,
    /// Keys parked because their rows could not be applied (`beltctl retry`).
    pub parked_rows: i64,
    /// Initial copy: rows copied so far and the estimated total.
    pub copy_rows: i64,
    pub copy_total: i64,
    /// How far the sync's set-up got.
    pub copy_state: CopyState,
    pub last_round_at: Option<String>,
    /// The highest `kick_seq` a finished round has answered.
    pub kick_done: i64,
    pub updated_at: Option<String>,
    /// Whether the last round was one transaction per side, so that the receiving
    /// side holds a state the source had (false while catching up in chunks; `None`
    /// before the first round).
    pub consistent: Option<bool>,
}

/// A sync's status in the one JSON shape `beltctl status --json` prints and the
/// daemon's `GET /status` serves: its name, its phase in words, and the fields of
/// [`SyncStatus`] beside them.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub sync: String,
    pub phase: String,
    #[serde(flatten)]
    pub status: SyncStatus,
}

impl StatusReport {
    /// The report of `sync` from its status.
    pub fn new(sync: String, status: SyncStatus) -> StatusReport {
        StatusReport {
            sync,
            phase: status.phase(),
            status,
        }
    }
}

/// One direction of a sync as the daemon last saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct DirectionStatus {
    pub from: String,
    pub to: String,
    pub pending_rows: i64,
    pub lag_seconds: f64,
}

/// A conflict as stored in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictRecord {
    pub recorded_at: String,
    pub table: String,
    pub key: String,
    pub strategy: String,
    pub first_db: String,
    pub first_changed_at: String,
    pub second_db: String,
    pub second_changed_at: String,
    pub winner: Option<String>,
    /// The losing side's row as it was before it was overwritten (JSON; `None` when
    /// it had been deleted, or nothing was overwritten).
    pub loser_row: Option<String>,
    /// `insert/insert`, `update/update`, `update/delete` or `delete/delete`; `None` for
    /// conflicts recorded before catalog version 6.
    pub kind: Option<String>,
}

/// A parked key as stored in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParkedRecord {
    pub id: i64,
    pub parked_at: String,
    #[serde(flatten)]
    pub parked: crate::engine::park::Parked,
}

impl SyncStatus {
    /// Where the sync stands, in an operator's words: `waiting for the daemon`,
    /// `schema`, `copying 45%`, `building indexes`, `catching up`, `replicating`,
    /// `paused`, `retrying`, `failed`, `stopped`.
    pub fn phase(&self) -> String {
        match self.state {
            _ if self.copy_state == CopyState::Added => "waiting for beltctl setup".into(),
            SyncState::New => "waiting for the daemon".into(),
            SyncState::Queued => "queued for setup".into(),
            SyncState::Copying => match self.copy_total {
                0 => "copying".into(),
                total => format!("copying {}%", (self.copy_rows * 100 / total).min(100)),
            },
            SyncState::Indexing => "building indexes".into(),
            SyncState::Replicating if self.pending_rows > 0 && self.copy_total > 0 && self.rounds < 2 => {
                "catching up".into()
            }
            other => other.to_string(),
        }
    }

    /// Whether the sync is set up and replicating.
    pub fn is_replicating(&self) -> bool {
        self.state == SyncState::Replicating
    }
}
