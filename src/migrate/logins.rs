//! Fencing writes for a cutover: set the application's roles to NOLOGIN on one
//! database (and end their sessions), then give back exactly those roles later.
//!
//! Roles are server-wide in PostgreSQL: NOLOGIN keeps a role out of every database of
//! that server. Superusers, belt's own role, built-in `pg_*` roles and excluded roles
//! are never touched. pgbelt restores every NOLOGIN role afterwards, including roles
//! that were NOLOGIN on purpose; belt records the roles it changed and restores only
//! those.

use tokio_postgres::Client;

use crate::pg::{quote, DbError};

/// Login roles belt would fence on this server.
pub async fn application_roles(c: &Client, db: &str, exclude: &[String]) -> Result<Vec<String>, DbError> {
    let rows = c
        .query(
            "select rolname::text from pg_roles where rolcanlogin and not rolsuper \
             and rolname <> current_user and rolname not like 'pg\\_%' \
             and rolname not in ('rdsadmin', 'rdsrepladmin', 'cloudsqladmin', 'azure_superuser') \
             and not (rolname = any($1)) order by 1",
            &[&exclude],
        )
        .await
        .map_err(|e| DbError::query(db, "list login roles", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Sets `role` to NOLOGIN or LOGIN; a role already so is left alone (a fence that
/// failed before changing it must not fail again when it is lifted).
pub async fn set_login(c: &Client, db: &str, role: &str, login: bool) -> Result<(), DbError> {
    let what = if login { "login" } else { "nologin" };
    let now: Option<bool> = c
        .query_opt("select rolcanlogin from pg_roles where rolname = $1", &[&role])
        .await
        .map_err(|e| DbError::query(db, format!("look up role {role}"), e))?
        .map(|r| r.get(0));
    if now == Some(login) {
        return Ok(());
    }
    c.batch_execute(&format!("alter role {} {what}", quote::ident(role)))
        .await
        .map_err(|e| DbError::query(db, format!("alter role {role} {what} (needs CREATEROLE, on PostgreSQL 16+ also ADMIN OPTION on the role; beltctl precheck names the grants)"), e))
}

/// Ends the sessions of `roles` on this server; returns how many.
pub async fn terminate(c: &Client, db: &str, roles: &[String]) -> Result<u64, DbError> {
    let row = c
        .query_one(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity \
             where usename = any($1) and pid <> pg_backend_pid()",
            &[&roles],
        )
        .await
        .map_err(|e| DbError::query(db, "end the fenced roles' sessions", e))?;
    Ok(row.get::<_, i64>(0) as u64)
}
