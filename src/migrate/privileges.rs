//! What belt's own role may do on each database, checked by precheck so that a
//! missing privilege is named with the statement that grants it before anything is
//! written — not discovered half-way through a setup or a cutover. belt never needs
//! superuser (DESIGN.md rule 10): the README's privileges table lists what each
//! provider's admin role gives.

use tokio_postgres::Client;

use super::logins::application_roles;
use super::precheck::{Level, Report};
use crate::pg::introspect::TableInfo;
use crate::pg::DbError;

async fn names(c: &Client, db: &str, sql: &str, tables: &[String]) -> Result<Vec<String>, DbError> {
    Ok(c.query(sql, &[&tables])
        .await
        .map_err(|e| DbError::query(db, "check belt's privileges", e))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Adds findings about belt's role on one database of a sync: rights on the sync's
/// tables, row security, and (as warnings: only cutover needs them) the fence.
pub async fn check(
    report: &mut Report,
    db: &str,
    c: &Client,
    tables: &[TableInfo],
    version: i32,
) -> Result<(), DbError> {
    let row = c
        .query_one(
            "select current_user::text, rolsuper, rolcreaterole, rolbypassrls, \
             pg_has_role(current_user, 'pg_signal_backend', 'USAGE'), quote_ident(current_user) \
             from pg_roles where rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| DbError::query(db, "read belt's role", e))?;
    let me: String = row.get(0);
    let who: String = row.get(5);
    if row.get::<_, bool>(1) {
        report.add(Level::Ok, db, "belt's role", format!("{me} is a superuser"));
        return Ok(());
    }
    let qualified: Vec<String> = tables.iter().map(TableInfo::qualified).collect();
    let owners = names(
        c,
        db,
        "select distinct quote_ident(pg_get_userbyid(c.relowner)) from pg_class c \
         where c.oid = any(array(select to_regclass(t) from unnest($1::text[]) t)) \
         and not pg_has_role(current_user, c.relowner, 'USAGE') order by 1",
        &qualified,
    )
    .await?;
    if owners.is_empty() {
        report.add(
            Level::Ok,
            db,
            "table rights",
            format!("{me} has the owner's rights on every table of the sync"),
        );
    }
    for owner in owners {
        report.add(
            Level::Blocker,
            db,
            "table rights",
            format!(
                "{me} needs the rights of {owner}, who owns tables of the sync (capture triggers, apply, VALIDATE, ANALYZE): GRANT {owner} TO {who}"
            ),
        );
    }
    if !row.get::<_, bool>(3) {
        let forced = names(
            c,
            db,
            "select c.oid::regclass::text from pg_class c \
             where c.oid = any(array(select to_regclass(t) from unnest($1::text[]) t)) \
             and c.relforcerowsecurity order by 1",
            &qualified,
        )
        .await?;
        if !forced.is_empty() {
            report.add(
                Level::Blocker,
                db,
                "row security",
                format!(
                    "{} FORCE ROW LEVEL SECURITY, so policies would hide rows from belt (it refuses rather than copy part of a table): ALTER ROLE {who} BYPASSRLS (as a superuser), or ALTER TABLE … NO FORCE ROW LEVEL SECURITY for the migration",
                    forced.join(", ")
                ),
            );
        }
    }
    fence(report, db, c, (&me, &who), (row.get(2), row.get(4)), version).await
}

/// The fence of cutover and failback: NOLOGIN on the application's roles and the end
/// of their sessions.
async fn fence(
    report: &mut Report,
    db: &str,
    c: &Client,
    (me, who): (&str, &str),
    (createrole, signal): (bool, bool),
    version: i32,
) -> Result<(), DbError> {
    let mut missing = Vec::new();
    if !createrole {
        missing.push(format!("ALTER ROLE {who} CREATEROLE"));
    }
    if !signal {
        missing.push(format!("GRANT pg_signal_backend TO {who}"));
    }
    if version >= 16 {
        // Since PostgreSQL 16, CREATEROLE alters only roles it holds ADMIN OPTION on.
        let roles = application_roles(c, db, &[]).await?;
        let lacking = names(
            c,
            db,
            "select quote_ident(rolname) from pg_roles where rolname = any($1) \
             and not pg_has_role(current_user, oid, 'MEMBER WITH ADMIN OPTION') order by 1",
            &roles,
        )
        .await?;
        for role in lacking {
            missing.push(format!(
                "GRANT {role} TO {who} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE"
            ));
        }
    }
    if missing.is_empty() {
        report.add(
            Level::Ok,
            db,
            "fence",
            format!("{me} may set the application's roles NOLOGIN and end their sessions"),
        );
    } else {
        report.add(
            Level::Warning,
            db,
            "fence",
            format!(
                "cutover and revoke-logins cannot fence the application until {me} may alter its roles and end their sessions: {}",
                missing.join("; ")
            ),
        );
    }
    Ok(())
}
