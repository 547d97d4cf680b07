//! Rule 4 of DESIGN.md: conflicts are resolved per key, deterministically.
//!
//! A key changed on both databases since their last round is a conflict. Each side
//! summarizes its changed keys of a chunk as (key, newest `changed_at`) and ships the
//! summary to the other side; each side then sends exactly the keys it wins. Per key,
//! not per table: Bucardo's `bucardo_latest` ranks whole databases by their newest
//! change anywhere in the table, so a newer edit of one row can lose to an older one.
//!
//! Strategies: `latest` (default) — the later `changed_at` wins, ties go to the sync's
//! first database; `source` — the first database always wins; `target` — the second
//! always wins; `skip` — neither side sends the key, both keep their rows; `abort` —
//! the round stops. Deletes take part like any other change, since a delta records
//! a key, not an operation. Every conflict is returned to the caller for the record.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// How a conflict is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    #[default]
    Latest,
    Source,
    Target,
    Skip,
    Abort,
}

impl Strategy {
    /// Every strategy's name, for help and validation.
    pub const NAMES: [&'static str; 5] = ["latest", "source", "target", "skip", "abort"];

    /// SQL condition, over my summary `s` and the peer's summary `p` of one conflicting
    /// key, that is true when the peer's state wins (so I do not send mine).
    pub fn peer_wins_sql(self, i_am_first: bool) -> &'static str {
        match (self, i_am_first) {
            (Strategy::Latest, true) => "p.belt_changed_at > s.belt_changed_at",
            (Strategy::Latest, false) => "p.belt_changed_at >= s.belt_changed_at",
            (Strategy::Source, first) => bool_sql(!first),
            (Strategy::Target, first) => bool_sql(first),
            (Strategy::Skip | Strategy::Abort, _) => "true",
        }
    }
}

fn bool_sql(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Strategy::NAMES[*self as usize])
    }
}

/// A conflict strategy name that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("unknown conflict strategy '{0}': use latest, source, target, skip or abort")]
pub struct BadStrategy(String);

impl FromStr for Strategy {
    type Err = BadStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "latest" => Ok(Strategy::Latest),
            "source" => Ok(Strategy::Source),
            "target" => Ok(Strategy::Target),
            "skip" => Ok(Strategy::Skip),
            "abort" => Ok(Strategy::Abort),
            other => Err(BadStrategy(other.to_string())),
        }
    }
}

/// What the two sides did to a key they both changed, as far as belt can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ConflictKind {
    /// Both sides inserted the key: an application that chooses its own keys (or two
    /// sequences handing out one value) made two different rows.
    #[serde(rename = "insert/insert")]
    InsertInsert,
    /// Both sides hold a row for the key and at least one of them updated it.
    #[serde(rename = "update/update")]
    UpdateUpdate,
    /// One side deleted the row, the other changed it.
    #[serde(rename = "update/delete")]
    UpdateDelete,
    /// Both sides deleted it.
    #[serde(rename = "delete/delete")]
    DeleteDelete,
}

impl ConflictKind {
    /// Classifies by each side's first captured operation on the key (`i`, `u`, `d`)
    /// and whether each side still holds a row.
    pub fn of(first_ops: [Option<char>; 2], rows: [bool; 2]) -> ConflictKind {
        match (first_ops, rows) {
            (_, [false, false]) => ConflictKind::DeleteDelete,
            (_, [true, false] | [false, true]) => ConflictKind::UpdateDelete,
            ([Some('i'), Some('i')], _) => ConflictKind::InsertInsert,
            _ => ConflictKind::UpdateUpdate,
        }
    }

    /// The name stored in the catalog and shown by `beltctl conflicts`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::InsertInsert => "insert/insert",
            ConflictKind::UpdateUpdate => "update/update",
            ConflictKind::UpdateDelete => "update/delete",
            ConflictKind::DeleteDelete => "delete/delete",
        }
    }
}

/// One key changed on both databases, and how it was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// `schema.table`.
    pub table: String,
    /// The key's columns as text, comma-separated.
    pub key: String,
    pub kind: ConflictKind,
    /// Newest change of the key on the first and on the second database.
    pub first_changed_at: String,
    pub second_changed_at: String,
    /// The database whose row both sides now hold; `None` for skip and abort.
    pub winner: Option<String>,
    /// The other database's row before it was overwritten, as JSON (`None` when it
    /// had none): a losing write is kept here, never dropped without a trace.
    pub loser_row: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::{ConflictKind, Strategy};

    #[test]
    fn kinds() {
        let i = Some('i');
        assert_eq!(ConflictKind::of([i, i], [true, true]), ConflictKind::InsertInsert);
        assert_eq!(
            ConflictKind::of([i, Some('u')], [true, true]),
            ConflictKind::UpdateUpdate
        );
        assert_eq!(
            ConflictKind::of([None, i], [true, true]),
            ConflictKind::UpdateUpdate
        );
        assert_eq!(
            ConflictKind::of([i, i], [true, false]),
            ConflictKind::UpdateDelete
        );
        assert_eq!(
            ConflictKind::of([Some('d'), Some('d')], [false, false]),
            ConflictKind::DeleteDelete
        );
    }

    #[test]
    fn names_round_trip() {
        for name in Strategy::NAMES {
            assert_eq!(name.parse::<Strategy>().unwrap().to_string(), name);
        }
        assert!("newest".parse::<Strategy>().is_err());
    }

    #[test]
    fn latest_breaks_ties_for_the_first_database() {
        assert!(!Strategy::Latest.peer_wins_sql(true).contains(">="));
        assert!(Strategy::Latest.peer_wins_sql(false).contains(">="));
        assert_eq!(Strategy::Source.peer_wins_sql(true), "false");
        assert_eq!(Strategy::Target.peer_wins_sql(true), "true");
    }
}
