//! A sync as `beltctl add sync` and plan files write it — databases as
//! `A:source,B:target`, tables as `all` or a list — turned into a [`SyncDef`] and the
//! tables it asks for. Errors are the sentence to show, naming the bad part.

use crate::catalog::{CopyState, Member, Role, SyncDef};
use crate::pg::introspect::TableName;
use crate::tables::Selection;

/// A sync's fields as text, before they are checked.
pub struct SyncText<'a> {
    pub name: &'a str,
    pub dbs: &'a str,
    pub tables: &'a str,
    pub schema: Option<&'a str>,
    pub conflict: &'a str,
    pub group: Option<&'a str>,
    pub copy: bool,
    pub shard: Option<u32>,
}

/// `A:source,B:target` as members, in order.
pub fn parse_members(text: &str) -> Result<Vec<Member>, String> {
    let mut members = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (db, role) = part.split_once(':').unwrap_or((part, ""));
        let role = role
            .parse::<Role>()
            .map_err(|_| format!("--dbs: '{part}' must be NAME:source or NAME:target"))?;
        if members.iter().any(|m: &Member| m.db == db) {
            return Err(format!("--dbs: database '{db}' is listed twice"));
        }
        members.push(Member {
            db: db.to_string(),
            role,
        });
    }
    Ok(members)
}

fn parse_selection(tables: &str, schema: Option<&str>) -> Selection {
    if tables.trim() == "all" {
        return Selection::All {
            schema: schema.map(str::to_string),
        };
    }
    let schema = schema.unwrap_or("public");
    Selection::Listed(
        tables
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| TableName::parse(t, schema))
            .collect(),
    )
}

impl SyncText<'_> {
    /// The sync definition and the tables it selects.
    pub fn parse(&self) -> Result<(SyncDef, Selection), String> {
        let def = SyncDef {
            name: self.name.to_string(),
            members: parse_members(self.dbs)?,
            conflict: self
                .conflict
                .parse()
                .map_err(|e: crate::engine::conflict::BadStrategy| e.to_string())?,
            group: self.group.map(str::to_string),
            paused: false,
            kick_seq: 0,
            copy: if self.copy {
                CopyState::Added
            } else {
                CopyState::Done
            },
            tables_all: (self.tables.trim() == "all").then(|| self.schema.unwrap_or_default().to_string()),
            shard: self.shard,
        };
        Ok((def, parse_selection(self.tables, self.schema)))
    }
}
