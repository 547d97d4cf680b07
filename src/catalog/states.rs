//! The states a sync goes through, as types: stored as text in the catalog, an
//! unknown value read back is an error rather than a default. The copy state's
//! transitions are written here, once.

use serde::Serialize;

use crate::engine::Strategy;

/// Writes the `as_str`/`Display`/`FromStr` trio of a state enum stored as text.
macro_rules! text_enum {
    ($name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// The catalog's spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownState {
                        what: $what,
                        value: s.to_string(),
                    }),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                v.as_str()?
                    .parse()
                    .map_err(|e: UnknownState| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

/// A state the catalog holds that this version of belt does not know (a newer
/// belt wrote it, or the file was edited).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}' in the catalog (written by a newer belt?)")]
pub struct UnknownState {
    pub what: &'static str,
    pub value: String,
}

/// Whether a database of a sync produces changes or only receives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Target,
}

text_enum!(Role, "role", {
    Source => "source",
    Target => "target",
});

/// What a sync's task is doing, as the daemon last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncState {
    /// Added; no daemon has picked it up yet.
    #[default]
    New,
    /// Waiting for one of the daemon's `setup_jobs` slots.
    Queued,
    /// Creating the target's schema.
    Schema,
    Copying,
    /// Building the indexes and foreign keys the schema copy left for after the copy.
    Indexing,
    Replicating,
    /// Failed and trying again after a backoff.
    Retrying,
    /// Failed in a way only the operator can fix.
    Failed,
    Paused,
    /// The daemon stopped.
    Stopped,
    /// Another daemon runs it (it holds the sync's lock); this one takes over when
    /// that one stops.
    Standby,
}

text_enum!(SyncState, "sync state", {
    New => "new",
    Queued => "queued",
    Schema => "schema",
    Copying => "copying",
    Indexing => "indexing",
    Replicating => "replicating",
    Retrying => "retrying",
    Failed => "failed",
    Paused => "paused",
    Stopped => "stopped",
    Standby => "standby",
});

impl SyncState {
    /// Whether no daemon is working on the sync, so that it may be torn down.
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            SyncState::New | SyncState::Paused | SyncState::Stopped | SyncState::Failed
        )
    }
}

/// How far a sync's set-up got: `Added` → (`beltctl setup`) `Pending` → `Schema`
/// (belt creates the target's schema and owes its indexes) → `Copying` or
/// `CopyingSchema` → `Indexing` → `Done`. A sync added with `--no-copy` starts at
/// `Done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyState {
    /// Added; waits for `beltctl setup`.
    #[default]
    Added,
    /// Set-up requested; the daemon has not started it.
    Pending,
    Schema,
    /// Copying rows into tables that existed on the target.
    Copying,
    /// Copying rows into tables belt created; their indexes come after.
    CopyingSchema,
    Indexing,
    Done,
}

text_enum!(CopyState, "copy state", {
    Added => "added",
    Pending => "pending",
    Schema => "schema",
    Copying => "copying",
    CopyingSchema => "copying-schema",
    Indexing => "indexing",
    Done => "done",
});

impl CopyState {
    /// Whether the target's schema may still have to be copied.
    pub fn before_schema(self) -> bool {
        matches!(self, CopyState::Pending | CopyState::Schema)
    }

    /// Whether belt created the target's tables and still owes their indexes.
    pub fn owes_indexes(self) -> bool {
        matches!(
            self,
            CopyState::Schema | CopyState::CopyingSchema | CopyState::Indexing
        )
    }

    /// The state while the rows are copied.
    pub fn copying(self) -> CopyState {
        if self.owes_indexes() {
            CopyState::CopyingSchema
        } else {
            CopyState::Copying
        }
    }
}

/// The conflict strategy is the engine's type; the catalog stores its name.
impl rusqlite::types::ToSql for Strategy {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.to_string().into())
    }
}

impl rusqlite::types::FromSql for Strategy {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        v.as_str()?
            .parse()
            .map_err(|e: crate::engine::conflict::BadStrategy| {
                rusqlite::types::FromSqlError::Other(Box::new(e))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_as_written_and_unknown_ones_are_errors() {
        for s in [CopyState::Added, CopyState::CopyingSchema, CopyState::Done] {
            assert_eq!(s.as_str().parse::<CopyState>(), Ok(s));
        }
        assert_eq!("replicating".parse::<SyncState>(), Ok(SyncState::Replicating));
        let e = "sleeping".parse::<SyncState>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown sync state 'sleeping' in the catalog (written by a newer belt?)"
        );
    }

    #[test]
    fn a_copy_into_tables_belt_created_owes_their_indexes() {
        assert_eq!(CopyState::Schema.copying(), CopyState::CopyingSchema);
        assert_eq!(CopyState::Pending.copying(), CopyState::Copying);
        assert!(CopyState::Indexing.owes_indexes() && !CopyState::Copying.owes_indexes());
    }
}
