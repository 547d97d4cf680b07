//! The constraints gate of cutover and failback: the schema step creates foreign keys
//! `NOT VALID` (rows arrive table by table), so before the new side becomes
//! authoritative every constraint that is validated on the old side is validated on
//! the new one. Afterwards the two schemas are the same, constraint for constraint,
//! and the new side has proved that its rows satisfy them.

use tokio_postgres::Client;

use crate::pg::{quote, DbError};

/// The gate failed.
#[derive(Debug, thiserror::Error)]
pub enum ConstraintError {
    /// A row on the new side breaks a constraint the old side enforces.
    #[error("database '{db}': constraint {name} on {table} does not hold: {detail}; fix or remove that row on '{db}', then run the same command again")]
    Violated {
        db: String,
        table: String,
        name: String,
        detail: String,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// One foreign key or check constraint: `(table, name, validated)`.
type Constraint = (String, String, bool);

async fn constraints(c: &Client, db: &str) -> Result<Vec<Constraint>, DbError> {
    // Belt's sessions pin search_path to pg_catalog, so regclass prints the schema.
    let rows = c
        .query(
            "select c.conrelid::regclass::text, c.conname::text, c.convalidated \
             from pg_constraint c join pg_class r on r.oid = c.conrelid \
             join pg_namespace n on n.oid = r.relnamespace \
             where c.contype in ('f', 'c') and n.nspname <> 'belt' \
             and n.nspname not in ('pg_catalog', 'information_schema') order by 1, 2",
            &[],
        )
        .await
        .map_err(|e| DbError::query(db, "list constraints", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

/// Validates on `new` every constraint that `old` has validated and `new` has not.
/// Returns the names of the constraints it validated.
pub async fn validate_like(
    old: &Client,
    old_db: &str,
    new: &Client,
    new_db: &str,
) -> Result<Vec<String>, ConstraintError> {
    let validated: Vec<(String, String)> = constraints(old, old_db)
        .await?
        .into_iter()
        .filter(|c| c.2)
        .map(|(t, n, _)| (t, n))
        .collect();
    let mut done = Vec::new();
    for (table, name, _) in constraints(new, new_db).await?.into_iter().filter(|c| !c.2) {
        if !validated.contains(&(table.clone(), name.clone())) {
            continue;
        }
        let sql = format!("alter table {table} validate constraint {}", quote::ident(&name));
        match new.batch_execute(&sql).await {
            Ok(()) => done.push(format!("{table}.{name}")),
            Err(e) => {
                let detail = match e.code().map(|c| c.code()) {
                    Some("23503") | Some("23514") => violation(new, &table, &name, &e).await,
                    _ => {
                        return Err(DbError::query(
                            new_db,
                            format!("validate constraint {name} on {table}"),
                            e,
                        )
                        .into())
                    }
                };
                return Err(ConstraintError::Violated {
                    db: new_db.to_string(),
                    table,
                    name,
                    detail,
                });
            }
        }
    }
    Ok(done)
}

/// Says which row breaks the constraint: the server's detail for a foreign key
/// (`Key (a)=(5) is not present in table "p"`), the first violating key for a check.
async fn violation(c: &Client, table: &str, name: &str, e: &tokio_postgres::Error) -> String {
    if let Some(detail) = e.as_db_error().and_then(|d| d.detail()) {
        return detail.to_string();
    }
    let found = c
        .query_opt(
            "select (select string_agg(quote_ident(a.attname), ', ' order by k.i) \
               from pg_index i, unnest(i.indkey) with ordinality k(attnum, i) \
               join pg_attribute a on a.attnum = k.attnum \
              where i.indrelid = $1::regclass and i.indisprimary and a.attrelid = i.indrelid), \
             regexp_replace(regexp_replace(pg_get_constraintdef(c.oid), '^CHECK ', ''), ' NOT VALID$', '') \
             from pg_constraint c where c.conrelid = $1::regclass and c.conname = $2",
            &[&table, &name],
        )
        .await
        .ok()
        .flatten();
    let Some((Some(key), check)) = found.map(|r| (r.get::<_, Option<String>>(0), r.get::<_, String>(1)))
    else {
        return "a row violates it".into();
    };
    let sql = format!("select ({key})::text from {table} where not {check} limit 1");
    match c.query_opt(&sql, &[]).await {
        Ok(Some(row)) => format!(
            "the row with key ({key}) = {} violates it",
            row.get::<_, String>(0)
        ),
        _ => "a row violates it".into(),
    }
}
