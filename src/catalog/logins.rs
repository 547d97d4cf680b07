//! Roles whose logins belt revoked, per sync and database; and which database of a
//! sync is authoritative (cutover, failback).

use rusqlite::params;

use super::{Catalog, CatalogError};

impl Catalog {
    /// Records that belt set `role` to NOLOGIN on `db` for `sync`.
    pub fn record_revoked(&mut self, sync: &str, db: &str, role: &str) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "insert into revoked_logins (sync, db, role) values (?1, ?2, ?3) on conflict do nothing",
                params![sync, db, role],
            )
            .map_err(self.err("record revoked login"))?;
        Ok(())
    }

    /// The roles belt revoked on `db` for `sync`.
    pub fn revoked(&self, sync: &str, db: &str) -> Result<Vec<String>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("select role from revoked_logins where sync = ?1 and db = ?2 order by role")
            .map_err(self.err("list revoked logins"))?;
        let rows = stmt
            .query_map(params![sync, db], |r| r.get(0))
            .map_err(self.err("list revoked logins"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("list revoked logins"))
    }

    /// Forgets a revoked login once it is restored.
    pub fn forget_revoked(&mut self, sync: &str, db: &str, role: &str) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "delete from revoked_logins where sync = ?1 and db = ?2 and role = ?3",
                params![sync, db, role],
            )
            .map_err(self.err("forget revoked login"))?;
        Ok(())
    }

    /// The database the applications write to: set by cutover and failback, else
    /// the sync's first database.
    pub fn authority(&self, sync: &str) -> Result<(Option<String>, bool), CatalogError> {
        self.conn
            .query_row(
                "select authority, switching from syncs where name = ?1",
                [sync],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.err("read authority"))
    }

    /// Marks a switch of authority as under way (or over).
    pub fn set_switching(&mut self, sync: &str, switching: bool) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "update syncs set switching = ?2 where name = ?1",
                params![sync, switching],
            )
            .map_err(self.err("store switching"))?;
        Ok(())
    }

    /// Records the new authoritative database at the end of a switch.
    pub fn set_authority(&mut self, sync: &str, db: &str) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "update syncs set authority = ?2, switching = 0 where name = ?1",
                params![sync, db],
            )
            .map_err(self.err("store authority"))?;
        Ok(())
    }
}
