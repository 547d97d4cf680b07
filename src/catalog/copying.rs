//! Checkpoints of the initial copy: per table part, the last key of the last
//! finished chunk, so that a restarted daemon resumes at the next chunk.

use rusqlite::params;

use super::{Catalog, CatalogError, CopyState};

/// Copy state of one part (a key range) of a table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyPart {
    pub part: i64,
    /// Where the next chunk starts (exclusive); `None`: at the table's first key.
    pub last_key: Option<Vec<String>>,
    /// The part's last key (inclusive); `None`: to the table's end.
    pub upper_key: Option<Vec<String>>,
    pub rows: i64,
    pub total: i64,
    pub done: bool,
}

fn key_json(key: Option<&[String]>) -> Option<String> {
    key.map(|k| serde_json::to_string(k).expect("key serializes"))
}

fn json_key(text: Option<String>) -> Option<Vec<String>> {
    text.and_then(|k| serde_json::from_str(&k).ok())
}

impl Catalog {
    /// Records how far a sync's set-up got.
    pub fn set_copy_state(&mut self, sync: &str, state: CopyState) -> Result<(), CatalogError> {
        self.conn
            .execute("update syncs set copy = ?2 where name = ?1", params![sync, state])
            .map_err(self.err("store copy state"))?;
        Ok(())
    }

    /// Records the shard that runs a sync (from the plan).
    pub fn set_shard(&mut self, sync: &str, shard: Option<u32>) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "update syncs set shard = ?2 where name = ?1",
                params![sync, shard],
            )
            .map_err(self.err("store shard"))?;
        Ok(())
    }

    /// Marks a sync added with a copy as ready for the daemon to set up; `false` when
    /// it was requested (or set up) already.
    pub fn request_setup(&mut self, sync: &str) -> Result<bool, CatalogError> {
        self.require_sync(sync)?;
        let changed = self
            .conn
            .execute(
                "update syncs set copy = 'pending' where name = ?1 and copy = 'added'",
                [sync],
            )
            .map_err(self.err("request setup"))?;
        Ok(changed > 0)
    }

    /// The parts of a table's copy, once it has been planned.
    pub fn copy_parts(&self, sync: &str, schema: &str, table: &str) -> Result<Vec<CopyPart>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare(
                "select part, last_key, upper_key, rows, total, done from copy_progress \
                 where sync = ?1 and schema_name = ?2 and table_name = ?3 order by part",
            )
            .map_err(self.err("read copy progress"))?;
        let rows = stmt
            .query_map(params![sync, schema, table], |r| {
                Ok(CopyPart {
                    part: r.get(0)?,
                    last_key: json_key(r.get(1)?),
                    upper_key: json_key(r.get(2)?),
                    rows: r.get(3)?,
                    total: r.get(4)?,
                    done: r.get(5)?,
                })
            })
            .map_err(self.err("read copy progress"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("read copy progress"))
    }

    /// Records the plan of a table's copy: its parts, each with its key range and
    /// estimated rows. Does nothing when the table has a plan already.
    pub fn plan_table_copy(
        &mut self,
        sync: &str,
        schema: &str,
        table: &str,
        parts: &[CopyPart],
    ) -> Result<(), CatalogError> {
        for p in parts {
            self.conn
                .execute(
                    "insert into copy_progress (sync, schema_name, table_name, part, last_key, upper_key, total) \
                     values (?1, ?2, ?3, ?4, ?5, ?6, ?7) on conflict do nothing",
                    params![
                        sync,
                        schema,
                        table,
                        p.part,
                        key_json(p.last_key.as_deref()),
                        key_json(p.upper_key.as_deref()),
                        p.total
                    ],
                )
                .map_err(self.err("plan copy"))?;
        }
        Ok(())
    }

    /// Records a finished chunk of a part.
    #[allow(clippy::too_many_arguments)]
    pub fn checkpoint_copy(
        &mut self,
        sync: &str,
        schema: &str,
        table: &str,
        part: i64,
        last_key: Option<&[String]>,
        rows: u64,
        done: bool,
    ) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "update copy_progress set last_key = ?5, rows = rows + ?6, done = ?7 \
                 where sync = ?1 and schema_name = ?2 and table_name = ?3 and part = ?4",
                params![sync, schema, table, part, key_json(last_key), rows as i64, done],
            )
            .map_err(self.err("checkpoint copy"))?;
        Ok(())
    }
}
