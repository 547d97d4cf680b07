//! Roles whose logins belt revoked, per sync and database.

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
}
