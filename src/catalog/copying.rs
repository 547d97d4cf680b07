//! Checkpoints of the initial copy: per table, the last key of the last finished chunk.

use rusqlite::{params, OptionalExtension};

use super::{Catalog, CatalogError};

/// Copy state of one table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyProgress {
    pub schema: String,
    pub table: String,
    /// Where the next chunk starts; `None` before the first chunk.
    pub last_key: Option<Vec<String>>,
    pub rows: i64,
    pub total: i64,
    pub done: bool,
}

impl Catalog {
    /// Sets a sync's copy state: `pending`, `copying` or `done`.
    pub fn set_copy_state(&mut self, sync: &str, state: &str) -> Result<(), CatalogError> {
        self.conn
            .execute("update syncs set copy = ?2 where name = ?1", params![sync, state])
            .map_err(self.err("store copy state"))?;
        Ok(())
    }

    /// The copy state of one table, if its copy has started.
    pub fn copy_progress(
        &self,
        sync: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<CopyProgress>, CatalogError> {
        self.conn
            .query_row(
                "select last_key, rows, total, done from copy_progress \
                 where sync = ?1 and schema_name = ?2 and table_name = ?3",
                params![sync, schema, table],
                |r| {
                    Ok(CopyProgress {
                        schema: schema.to_string(),
                        table: table.to_string(),
                        last_key: r
                            .get::<_, Option<String>>(0)?
                            .and_then(|k| serde_json::from_str(&k).ok()),
                        rows: r.get(1)?,
                        total: r.get(2)?,
                        done: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(self.err("read copy progress"))
    }

    /// Starts tracking the copy of a table with its estimated size.
    pub fn start_table_copy(
        &mut self,
        sync: &str,
        schema: &str,
        table: &str,
        total: i64,
    ) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "insert into copy_progress (sync, schema_name, table_name, total) values (?1, ?2, ?3, ?4) \
                 on conflict do nothing",
                params![sync, schema, table, total],
            )
            .map_err(self.err("start copy progress"))?;
        Ok(())
    }

    /// Records a finished chunk.
    pub fn checkpoint_copy(
        &mut self,
        sync: &str,
        schema: &str,
        table: &str,
        last_key: Option<&[String]>,
        rows: u64,
    ) -> Result<(), CatalogError> {
        let key = last_key.map(|k| serde_json::to_string(k).expect("key serializes"));
        self.conn
            .execute(
                "update copy_progress set last_key = ?4, rows = rows + ?5, done = (?4 is null) \
                 where sync = ?1 and schema_name = ?2 and table_name = ?3",
                params![sync, schema, table, key, rows as i64],
            )
            .map_err(self.err("checkpoint copy"))?;
        Ok(())
    }
}
