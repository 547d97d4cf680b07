//! The SQLite connection and every query the catalog runs.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::model::{ConflictRecord, DirectionStatus, Member, ParkedRecord, Role, SyncDef, SyncStatus};
use super::CatalogError;
use crate::engine::park::Parked;
use crate::engine::Conflict;
use crate::engine::Snapshot;
use crate::pg::introspect::TableInfo;
use crate::pg::DbSpec;

/// Schema migrations, applied in order; `PRAGMA user_version` counts the applied ones.
const MIGRATIONS: &[&str] = &[include_str!("schema.sql"), include_str!("schema_v2.sql")];

/// Conflicts kept per sync; older ones are deleted as new ones arrive.
pub const CONFLICTS_KEPT: i64 = 10_000;

/// The open catalog file.
pub struct Catalog {
    conn: Connection,
    path: String,
}

impl Catalog {
    /// Opens (creating and migrating when needed) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Catalog, CatalogError> {
        let display = path.display().to_string();
        let err = |context| {
            let path = display.clone();
            move |source| CatalogError::Sql {
                path,
                context,
                source,
            }
        };
        let conn = Connection::open(path).map_err(err("open the file"))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(err("set busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "wal")
            .map_err(err("enable WAL"))?;
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

    fn err(&self, context: &'static str) -> impl FnOnce(rusqlite::Error) -> CatalogError + '_ {
        move |source| CatalogError::Sql {
            path: self.path.clone(),
            context,
            source,
        }
    }

    fn migrate(&mut self) -> Result<(), CatalogError> {
        let version: i64 = self
            .conn
            .query_row("pragma user_version", [], |r| r.get(0))
            .map_err(self.err("read schema version"))?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(CatalogError::TooNew {
                path: self.path.clone(),
                found: version,
                supported,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let path = self.path.clone();
            let tx = self.conn.transaction().map_err(|source| CatalogError::Sql {
                path: path.clone(),
                context: "begin migration",
                source,
            })?;
            tx.execute_batch(sql)
                .and_then(|_| tx.pragma_update(None, "user_version", i as i64 + 1))
                .and_then(|_| tx.commit())
                .map_err(|source| CatalogError::Sql {
                    path,
                    context: "migrate schema",
                    source,
                })?;
        }
        Ok(())
    }

    /// Adds a database definition.
    pub fn add_db(&mut self, spec: &DbSpec) -> Result<(), CatalogError> {
        if self.db(&spec.name)?.is_some() {
            return Err(CatalogError::Exists {
                kind: "db",
                name: spec.name.clone(),
            });
        }
        let file = spec.password_file.as_ref().map(|p| p.display().to_string());
        self.conn
            .execute(
                "insert into dbs (name, conninfo, password_env, password_file) values (?1, ?2, ?3, ?4)",
                params![spec.name, spec.conninfo, spec.password_env, file],
            )
            .map_err(self.err("add database"))?;
        Ok(())
    }

    /// One database definition.
    pub fn db(&self, name: &str) -> Result<Option<DbSpec>, CatalogError> {
        self.conn
            .query_row(
                "select name, conninfo, password_env, password_file from dbs where name = ?1",
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

    /// Every database definition, by name.
    pub fn dbs(&self) -> Result<Vec<DbSpec>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("select name, conninfo, password_env, password_file from dbs order by name")
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
        let path = self.path.clone();
        let err = |context| {
            let path = path.clone();
            move |source| CatalogError::Sql {
                path,
                context,
                source,
            }
        };
        let tx = self.conn.transaction().map_err(err("begin add sync"))?;
        tx.execute(
            "insert into syncs (name, conflict, grp) values (?1, ?2, ?3)",
            params![sync.name, sync.conflict, sync.group],
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

    /// Every sync, by name.
    pub fn syncs(&self) -> Result<Vec<SyncDef>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("select name, conflict, grp, paused, kick_seq from syncs order by name")
            .map_err(self.err("list syncs"))?;
        let mut syncs: Vec<SyncDef> = stmt
            .query_map([], |r| {
                Ok(SyncDef {
                    name: r.get(0)?,
                    conflict: r.get(1)?,
                    group: r.get(2)?,
                    paused: r.get(3)?,
                    kick_seq: r.get(4)?,
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
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(self.err("list sync members"))?;
        for m in members {
            let (sync, db, role) = m.map_err(self.err("list sync members"))?;
            if let Some(s) = syncs.iter_mut().find(|s| s.name == sync) {
                let role = Role::parse(&role).unwrap_or(Role::Target);
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

    /// Asks the daemon for a round; returns the kick number to wait for.
    pub fn kick(&mut self, name: &str) -> Result<i64, CatalogError> {
        self.require_sync(name)?;
        self.conn
            .query_row(
                "update syncs set kick_seq = kick_seq + 1 where name = ?1 returning kick_seq",
                [name],
                |r| r.get(0),
            )
            .map_err(self.err("kick sync"))
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

    /// The status the daemon last reported.
    pub fn status(&self, sync: &str) -> Result<SyncStatus, CatalogError> {
        self.conn
            .query_row(
                "select state, last_error, rounds, rows_applied, pending_rows, lag_seconds, \
                 last_round_at, kick_done, updated_at, directions, clock_offset_ms, conflicts, \
                 (select count(*) from parked p where p.sync = ?1) from sync_status where sync = ?1",
                [sync],
                |r| {
                    Ok(SyncStatus {
                        state: r.get(0)?,
                        last_error: r.get(1)?,
                        rounds: r.get(2)?,
                        rows_applied: r.get(3)?,
                        pending_rows: r.get(4)?,
                        lag_seconds: r.get(5)?,
                        last_round_at: r.get(6)?,
                        kick_done: r.get(7)?,
                        updated_at: r.get(8)?,
                        directions: serde_json::from_str(&r.get::<_, String>(9)?).unwrap_or_default(),
                        clock_offset_ms: r.get(10)?,
                        conflicts: r.get(11)?,
                        parked_rows: r.get(12)?,
                    })
                },
            )
            .optional()
            .map_err(self.err("read status"))?
            .ok_or_else(|| CatalogError::NotFound {
                kind: "sync",
                name: sync.to_string(),
            })
    }

    /// Records a state change and, for failures, the error a user should see.
    pub fn set_state(&mut self, sync: &str, state: &str, error: Option<&str>) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "update sync_status set state = ?2, last_error = coalesce(?3, last_error), \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') where sync = ?1",
                params![sync, state, error],
            )
            .map_err(self.err("store status"))?;
        Ok(())
    }

    /// Records a finished round: rows applied, what is still pending per direction,
    /// the clock offset and the kick it answered.
    pub fn round_done(&mut self, sync: &str, done: &RoundRecord) -> Result<(), CatalogError> {
        let pending: i64 = done.directions.iter().map(|d| d.pending_rows).sum();
        let lag = done.directions.iter().map(|d| d.lag_seconds).fold(0.0, f64::max);
        let directions = serde_json::to_string(&done.directions).expect("directions serialize");
        self.conn
            .execute(
                "update sync_status set state = 'replicating', last_error = null, rounds = rounds + 1, \
                 rows_applied = rows_applied + ?2, pending_rows = ?3, lag_seconds = ?4, \
                 kick_done = max(kick_done, ?5), directions = ?6, clock_offset_ms = ?7, \
                 conflicts = conflicts + ?8, \
                 last_round_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') where sync = ?1",
                params![
                    sync,
                    done.rows as i64,
                    pending,
                    lag,
                    done.kick,
                    directions,
                    done.clock_offset_ms,
                    done.conflicts as i64
                ],
            )
            .map_err(self.err("store round"))?;
        Ok(())
    }

    /// Stores conflicts, keeping the newest [`CONFLICTS_KEPT`] of the sync.
    pub fn record_conflicts(
        &mut self,
        sync: &str,
        dbs: [&str; 2],
        strategy: &str,
        conflicts: &[Conflict],
    ) -> Result<(), CatalogError> {
        let path = self.path.clone();
        let err = |context| {
            let path = path.clone();
            move |source| CatalogError::Sql {
                path,
                context,
                source,
            }
        };
        let tx = self
            .conn
            .transaction()
            .map_err(err("begin recording conflicts"))?;
        for c in conflicts {
            tx.execute(
                "insert into conflicts (sync, table_name, key, strategy, first_db, first_changed_at, \
                 second_db, second_changed_at, winner) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    sync,
                    c.table,
                    c.key,
                    strategy,
                    dbs[0],
                    c.first_changed_at,
                    dbs[1],
                    c.second_changed_at,
                    c.winner
                ],
            )
            .map_err(err("record conflict"))?;
        }
        tx.execute(
            "delete from conflicts where sync = ?1 and id <= (select max(id) from conflicts where sync = ?1) - ?2",
            params![sync, CONFLICTS_KEPT],
        )
        .map_err(err("trim conflicts"))?;
        tx.commit().map_err(err("commit conflicts"))?;
        Ok(())
    }

    /// The newest `limit` conflicts of a sync, newest first.
    pub fn conflicts(&self, sync: &str, limit: i64) -> Result<Vec<ConflictRecord>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare(
                "select recorded_at, table_name, key, strategy, first_db, first_changed_at, second_db, \
                 second_changed_at, winner from conflicts where sync = ?1 order by id desc limit ?2",
            )
            .map_err(self.err("list conflicts"))?;
        let rows = stmt
            .query_map(params![sync, limit], |r| {
                Ok(ConflictRecord {
                    recorded_at: r.get(0)?,
                    table: r.get(1)?,
                    key: r.get(2)?,
                    strategy: r.get(3)?,
                    first_db: r.get(4)?,
                    first_changed_at: r.get(5)?,
                    second_db: r.get(6)?,
                    second_changed_at: r.get(7)?,
                    winner: r.get(8)?,
                })
            })
            .map_err(self.err("list conflicts"))?;
        rows.collect::<Result<_, _>>().map_err(self.err("list conflicts"))
    }

    /// Stores keys the daemon parked.
    pub fn record_parked(&mut self, sync: &str, parked: &[Parked]) -> Result<(), CatalogError> {
        for p in parked {
            let key = serde_json::to_string(&p.key).expect("key serializes");
            self.conn
                .execute(
                    "insert into parked (sync, schema_name, table_name, key, from_db, failed_db, error) \
                     values (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![sync, p.schema, p.table, key, p.from_db, p.failed_db, p.error],
                )
                .map_err(self.err("record parked key"))?;
        }
        Ok(())
    }

    /// Every parked key of a sync, oldest first.
    pub fn parked(&self, sync: &str) -> Result<Vec<ParkedRecord>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare(
                "select id, parked_at, schema_name, table_name, key, from_db, failed_db, error \
                 from parked where sync = ?1 order by id",
            )
            .map_err(self.err("list parked keys"))?;
        let rows = stmt
            .query_map([sync], |r| {
                Ok(ParkedRecord {
                    id: r.get(0)?,
                    parked_at: r.get(1)?,
                    schema: r.get(2)?,
                    table: r.get(3)?,
                    key: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                    from_db: r.get(5)?,
                    failed_db: r.get(6)?,
                    error: r.get(7)?,
                })
            })
            .map_err(self.err("list parked keys"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("list parked keys"))
    }

    /// Forgets a parked key (after it was re-queued).
    pub fn unpark(&mut self, id: i64) -> Result<(), CatalogError> {
        self.conn
            .execute("delete from parked where id = ?1", [id])
            .map_err(self.err("unpark key"))?;
        Ok(())
    }

    /// Changes the roles (and order) of a sync's databases.
    pub fn set_members(&mut self, sync: &str, members: &[Member]) -> Result<(), CatalogError> {
        self.require_sync(sync)?;
        let path = self.path.clone();
        let err = |context| {
            let path = path.clone();
            move |source| CatalogError::Sql {
                path,
                context,
                source,
            }
        };
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

/// What a finished round reports to the catalog.
#[derive(Debug, Clone, Default)]
pub struct RoundRecord {
    pub rows: u64,
    pub directions: Vec<DirectionStatus>,
    pub kick: i64,
    pub clock_offset_ms: Option<f64>,
    pub conflicts: usize,
}

fn row_to_db(r: &rusqlite::Row<'_>) -> rusqlite::Result<DbSpec> {
    Ok(DbSpec {
        name: r.get(0)?,
        conninfo: r.get(1)?,
        password_env: r.get(2)?,
        password_file: r.get::<_, Option<String>>(3)?.map(Into::into),
    })
}
