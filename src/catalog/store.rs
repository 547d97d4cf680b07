//! The SQLite connection and every query the catalog runs.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::model::{Member, SyncDef};
use super::states::Role;
use super::CatalogError;
use crate::engine::Snapshot;
use crate::pg::introspect::TableInfo;
use crate::pg::DbSpec;

/// Schema migrations, applied in order; `PRAGMA user_version` counts the applied ones.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
    include_str!("schema_v6.sql"),
    include_str!("schema_v7.sql"),
    include_str!("schema_v8.sql"),
    include_str!("schema_v9.sql"),
];

/// The open catalog file.
pub struct Catalog {
    pub(super) conn: Connection,
    pub(super) path: String,
}

impl Catalog {
    /// Opens (creating and migrating when needed) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Catalog, CatalogError> {
        let display = path.display().to_string();
        let err = |context| fail(&display, context);
        let conn = Connection::open(path).map_err(err("open the file"))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(err("set busy timeout"))?;
        enable_wal(&conn).map_err(err("enable WAL"))?;
        conn.pragma_update(None, "foreign_keys", "on")
            .map_err(err("enable foreign keys"))?;
        conn.pragma_update(None, "synchronous", "normal")
            .map_err(err("set synchronous"))?;
        let mut catalog = Catalog {
            conn,
            path: display.clone(),
        };
        catalog.migrate()?;
        Ok(catalog)
    }

    pub(super) fn err(&self, context: &'static str) -> impl FnOnce(rusqlite::Error) -> CatalogError {
        fail(&self.path, context)
    }

    /// Brings the schema up to date in one IMMEDIATE transaction: the version is
    /// read under the write lock, so a daemon and a beltctl opening a new catalog at
    /// once do not both migrate it.
    fn migrate(&mut self) -> Result<(), CatalogError> {
        let path = self.path.clone();
        let err = |context| fail(&path, context);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err("begin migration"))?;
        let version: i64 = tx
            .query_row("pragma user_version", [], |r| r.get(0))
            .map_err(err("read schema version"))?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(CatalogError::TooNew {
                path: self.path.clone(),
                found: version,
                supported,
            });
        }
        if version == supported {
            return Ok(());
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)
                .and_then(|_| tx.pragma_update(None, "user_version", i as i64 + 1))
                .map_err(err("migrate schema"))?;
        }
        tx.commit().map_err(err("commit migration"))
    }

    /// Adds a database definition.
    pub fn add_db(&mut self, spec: &DbSpec) -> Result<(), CatalogError> {
        if self.db(&spec.name)?.is_some() {
            return Err(CatalogError::Exists {
                kind: "db",
                name: spec.name.clone(),
            });
        }
        let (file, command, ttl) = password_columns(spec);
        self.conn
            .execute(
                "insert into dbs (name, conninfo, password_env, password_file, password_command, password_ttl) \
                 values (?1, ?2, ?3, ?4, ?5, ?6)",
                params![spec.name, spec.conninfo, spec.password_env, file, command, ttl],
            )
            .map_err(self.err("add database"))?;
        Ok(())
    }

    /// Replaces a database definition (same name): repointing a sync's database.
    pub fn update_db(&mut self, spec: &DbSpec) -> Result<(), CatalogError> {
        self.require_db(&spec.name)?;
        let (file, command, ttl) = password_columns(spec);
        self.conn
            .execute(
                "update dbs set conninfo = ?2, password_env = ?3, password_file = ?4, \
                 password_command = ?5, password_ttl = ?6 where name = ?1",
                params![spec.name, spec.conninfo, spec.password_env, file, command, ttl],
            )
            .map_err(self.err("update database"))?;
        Ok(())
    }

    /// One database definition.
    pub fn db(&self, name: &str) -> Result<Option<DbSpec>, CatalogError> {
        self.conn
            .query_row(
                "select name, conninfo, password_env, password_file, password_command, password_ttl \
                 from dbs where name = ?1",
                [name],
                row_to_db,
            )
            .optional()
            .map_err(self.err("read database"))
    }

    /// One database definition, or an error that says how to add it.
    pub fn require_db(&self, name: &str) -> Result<DbSpec, CatalogError> {
        self.db(name)?.ok_or_else(|| CatalogError::NotFound {
            kind: "db",
            name: name.to_string(),
        })
    }

    /// `def`'s two databases with their settings, in the sync's order.
    pub fn db_pair(&self, def: &SyncDef) -> Result<super::DbPair, CatalogError> {
        let [a, b] = def.pair()?;
        Ok(super::DbPair {
            specs: [self.require_db(&a.db)?, self.require_db(&b.db)?],
            members: [a.clone(), b.clone()],
        })
    }

    /// Every database definition, by name.
    pub fn dbs(&self) -> Result<Vec<DbSpec>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare(
                "select name, conninfo, password_env, password_file, password_command, password_ttl \
                 from dbs order by name",
            )
            .map_err(self.err("list databases"))?;
        let rows = stmt
            .query_map([], row_to_db)
            .map_err(self.err("list databases"))?;
        rows.collect::<Result<_, _>>().map_err(self.err("list databases"))
    }

    /// Removes a database definition that no sync uses.
    pub fn remove_db(&mut self, name: &str) -> Result<(), CatalogError> {
        self.require_db(name)?;
        let user: Option<String> = self
            .conn
            .query_row("select sync from sync_dbs where db = ?1 limit 1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err("check database use"))?;
        if let Some(sync) = user {
            return Err(CatalogError::InUse {
                db: name.to_string(),
                sync,
            });
        }
        self.conn
            .execute("delete from dbs where name = ?1", [name])
            .map_err(self.err("remove database"))?;
        Ok(())
    }

    /// Adds a sync with its members and the tables it replicates.
    pub fn add_sync(&mut self, sync: &SyncDef, tables: &[TableInfo]) -> Result<(), CatalogError> {
        if self.sync(&sync.name)?.is_some() {
            return Err(CatalogError::Exists {
                kind: "sync",
                name: sync.name.clone(),
            });
        }
        self.refuse_shared_capture(sync, tables)?;
        let path = self.path.clone();
        let err = |context| fail(&path, context);
        let tx = self.conn.transaction().map_err(err("begin add sync"))?;
        tx.execute(
            "insert into syncs (name, conflict, grp, copy, tables_all, shard) values (?1, ?2, ?3, ?4, ?5, ?6)",
            params![sync.name, sync.conflict, sync.group, sync.copy, sync.tables_all, sync.shard],
        )
        .map_err(err("add sync"))?;
        for (ord, m) in sync.members.iter().enumerate() {
            tx.execute(
                "insert into sync_dbs (sync, db, role, ord) values (?1, ?2, ?3, ?4)",
                params![sync.name, m.db, m.role.as_str(), ord as i64],
            )
            .map_err(err("add sync member"))?;
        }
        for t in tables {
            let info = serde_json::to_string(t).expect("table info serializes");
            tx.execute(
                "insert into relations (sync, schema_name, table_name, info) values (?1, ?2, ?3, ?4)",
                params![sync.name, t.schema, t.name, info],
            )
            .map_err(err("add sync table"))?;
        }
        tx.execute(
            "insert into sync_status (sync, state) values (?1, 'new')",
            [&sync.name],
        )
        .map_err(err("add sync status"))?;
        tx.commit().map_err(err("commit add sync"))?;
        Ok(())
    }

    /// One sync.
    pub fn sync(&self, name: &str) -> Result<Option<SyncDef>, CatalogError> {
        Ok(self.syncs()?.into_iter().find(|s| s.name == name))
    }

    /// One sync, or an error that says how to list them.
    pub fn require_sync(&self, name: &str) -> Result<SyncDef, CatalogError> {
        self.sync(name)?.ok_or_else(|| CatalogError::NotFound {
            kind: "sync",
            name: name.to_string(),
        })
    }

    /// One sync per table and source database: a delta table is consumed (and
    /// emptied) by one sync, so a second sync reading it would lose changes.
    pub fn refuse_shared_capture(&self, def: &SyncDef, tables: &[TableInfo]) -> Result<(), CatalogError> {
        for other in self.syncs()?.into_iter().filter(|o| o.name != def.name) {
            let other_tables = self.relations(&other.name)?;
            for m in def.members.iter().filter(|m| m.role == Role::Source) {
                if !other
                    .members
                    .iter()
                    .any(|o| o.db == m.db && o.role == Role::Source)
                {
                    continue;
                }
                if let Some(t) = tables.iter().find(|t| {
                    t.key.is_some()
                        && other_tables
                            .iter()
                            .any(|o| o.schema == t.schema && o.name == t.name)
                }) {
                    return Err(CatalogError::SharedCapture {
                        table: t.display_name(),
                        db: m.db.clone(),
                        sync: other.name,
                    });
                }
            }
        }
        Ok(())
    }

    /// Every sync, by name.
    pub fn syncs(&self) -> Result<Vec<SyncDef>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare(
                "select name, conflict, grp, paused, kick_seq, copy, tables_all, shard from syncs order by name",
            )
            .map_err(self.err("list syncs"))?;
        let mut syncs: Vec<SyncDef> = stmt
            .query_map([], |r| {
                Ok(SyncDef {
                    name: r.get(0)?,
                    conflict: r.get(1)?,
                    group: r.get(2)?,
                    paused: r.get(3)?,
                    kick_seq: r.get(4)?,
                    copy: r.get(5)?,
                    tables_all: r.get(6)?,
                    shard: r.get(7)?,
                    members: Vec::new(),
                })
            })
            .map_err(self.err("list syncs"))?
            .collect::<Result<_, _>>()
            .map_err(self.err("list syncs"))?;
        let mut stmt = self
            .conn
            .prepare("select sync, db, role from sync_dbs order by sync, ord")
            .map_err(self.err("list sync members"))?;
        let members = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Role>(2)?,
                ))
            })
            .map_err(self.err("list sync members"))?;
        for m in members {
            let (sync, db, role) = m.map_err(self.err("list sync members"))?;
            if let Some(s) = syncs.iter_mut().find(|s| s.name == sync) {
                s.members.push(Member { db, role });
            }
        }
        Ok(syncs)
    }

    /// The tables a sync replicates, as resolved when it was added.
    pub fn relations(&self, sync: &str) -> Result<Vec<TableInfo>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("select info from relations where sync = ?1 order by schema_name, table_name")
            .map_err(self.err("list sync tables"))?;
        let rows = stmt
            .query_map([sync], |r| r.get::<_, String>(0))
            .map_err(self.err("list sync tables"))?;
        let mut out = Vec::new();
        for info in rows {
            let info = info.map_err(self.err("list sync tables"))?;
            out.push(serde_json::from_str(&info).expect("catalog holds valid table info"));
        }
        Ok(out)
    }

    /// Adds a table to a sync (one created after the sync was added).
    pub fn add_relation(&mut self, sync: &str, table: &TableInfo) -> Result<(), CatalogError> {
        let info = serde_json::to_string(table).expect("table info serializes");
        self.conn
            .execute(
                "insert into relations (sync, schema_name, table_name, info) values (?1, ?2, ?3, ?4)",
                params![sync, table.schema, table.name, info],
            )
            .map_err(self.err("add sync table"))?;
        Ok(())
    }

    /// `schema.table` of every table that some sync between databases `a` and `b`
    /// replicates (in either order): what a cutover of one of them leaves in step.
    pub fn replicated_between(&self, a: &str, b: &str) -> Result<Vec<String>, CatalogError> {
        let mut out = Vec::new();
        for def in self.syncs()? {
            let dbs: Vec<&str> = def.members.iter().map(|m| m.db.as_str()).collect();
            if dbs.len() == 2 && dbs.contains(&a) && dbs.contains(&b) {
                out.extend(self.relations(&def.name)?.iter().map(|t| t.display_name()));
            }
        }
        Ok(out)
    }

    /// Pauses or resumes a sync.
    pub fn set_paused(&mut self, name: &str, paused: bool) -> Result<(), CatalogError> {
        self.require_sync(name)?;
        self.conn
            .execute(
                "update syncs set paused = ?2 where name = ?1",
                params![name, paused],
            )
            .map_err(self.err("pause or resume sync"))?;
        Ok(())
    }

    /// Removes a sync, its positions and status.
    pub fn remove_sync(&mut self, name: &str) -> Result<(), CatalogError> {
        self.require_sync(name)?;
        self.conn
            .execute("delete from syncs where name = ?1", [name])
            .map_err(self.err("remove sync"))?;
        Ok(())
    }

    /// The last applied snapshot of `db` in `sync`.
    pub fn position(&self, sync: &str, db: &str) -> Result<Option<Snapshot>, CatalogError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "select snapshot from positions where sync = ?1 and db = ?2",
                [sync, db],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err("read position"))?;
        Ok(text.and_then(|t| t.parse().ok()))
    }

    /// Records that every change of `db` visible in `snapshot` has been applied.
    pub fn set_position(&mut self, sync: &str, db: &str, snapshot: &Snapshot) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "insert into positions (sync, db, snapshot) values (?1, ?2, ?3) \
                 on conflict (sync, db) do update set snapshot = excluded.snapshot, \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                params![sync, db, snapshot.to_string()],
            )
            .map_err(self.err("store position"))?;
        Ok(())
    }

    /// Changes the roles (and order) of a sync's databases.
    pub fn set_members(&mut self, sync: &str, members: &[Member]) -> Result<(), CatalogError> {
        self.require_sync(sync)?;
        let path = self.path.clone();
        let err = |context| fail(&path, context);
        let tx = self.conn.transaction().map_err(err("begin update sync"))?;
        tx.execute("delete from sync_dbs where sync = ?1", [sync])
            .map_err(err("update sync"))?;
        for (ord, m) in members.iter().enumerate() {
            tx.execute(
                "insert into sync_dbs (sync, db, role, ord) values (?1, ?2, ?3, ?4)",
                params![sync, m.db, m.role.as_str(), ord as i64],
            )
            .map_err(err("update sync"))?;
        }
        tx.commit().map_err(err("commit update sync"))?;
        Ok(())
    }
}

fn row_to_db(r: &rusqlite::Row<'_>) -> rusqlite::Result<DbSpec> {
    Ok(DbSpec {
        name: r.get(0)?,
        conninfo: r.get(1)?,
        password_env: r.get(2)?,
        password_file: r.get::<_, Option<String>>(3)?.map(Into::into),
        password_command: match r.get::<_, Option<String>>(4)? {
            Some(json) => Some(serde_json::from_str(&json).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
            })?),
            None => None,
        },
        password_ttl: r
            .get::<_, Option<i64>>(5)?
            .map(|s| Duration::from_secs(s.max(0) as u64)),
    })
}

/// The password columns of `spec` as stored: file path, command argv as JSON, TTL.
fn password_columns(spec: &DbSpec) -> (Option<String>, Option<String>, Option<i64>) {
    (
        spec.password_file.as_ref().map(|p| p.display().to_string()),
        spec.password_command
            .as_ref()
            .map(|argv| serde_json::to_string(argv).expect("strings serialize")),
        spec.password_ttl.map(|d| d.as_secs() as i64),
    )
}

/// Switches a new catalog to WAL. That takes the file's exclusive lock, and two
/// processes opening a new catalog at once (a daemon starting while `beltctl status`
/// looks) can each hold what the other needs: SQLite then answers "database is
/// locked" at once, without waiting out the busy timeout. So try again, for as long
/// as the busy timeout would have waited.
fn enable_wal(conn: &Connection) -> Result<(), rusqlite::Error> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match conn.pragma_update(None, "journal_mode", "wal") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            done => return done,
        }
    }
}

/// Maps a rusqlite error to a catalog error naming the file and what failed.
pub(super) fn fail(path: &str, context: &'static str) -> impl FnOnce(rusqlite::Error) -> CatalogError {
    let path = path.to_string();
    move |source| CatalogError::Sql {
        path,
        context,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon and a `beltctl` opening a new catalog at the same moment both get it.
    #[test]
    fn processes_opening_a_new_catalog_at_once_all_get_it() {
        let dir = std::env::temp_dir().join(format!("belt-catalog-race-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for round in 0..20 {
            let path = dir.join(format!("{round}.db"));
            let start = std::sync::Arc::new(std::sync::Barrier::new(4));
            let opened: Vec<_> = (0..4)
                .map(|_| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        Catalog::open(&path).map(|_| ()).map_err(|e| e.to_string())
                    })
                })
                .collect();
            for open in opened {
                open.join().unwrap().unwrap();
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
