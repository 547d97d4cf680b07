//! Rule 7 of DESIGN.md, one-way part: a target sequence never falls behind its source.
//! (With two sources each side keeps its own sequences; interleaving comes later.)
//!
//! Each round reads the source's sequences and moves a target sequence forward to the
//! source's value when it is behind; it never moves one backwards. After a cutover
//! the new primary therefore hands out no id the old one already used.

use super::Side;
use crate::pg::introspect::TableName;
use crate::pg::{quote, DbError};

/// Moves each target sequence up to its source value; returns how many moved. One
/// query per side reads every value (`pg_sequences`), so a round with nothing to
/// move costs two round trips however many sequences there are.
pub async fn carry(from: &Side, to: &Side, seqs: &[TableName]) -> Result<u64, DbError> {
    if seqs.is_empty() {
        return Ok(0);
    }
    let (schemas, names): (Vec<&str>, Vec<&str>) =
        seqs.iter().map(|s| (s.schema.as_str(), s.name.as_str())).unzip();
    let (src, dst) = tokio::try_join!(values(from, &schemas, &names), values(to, &schemas, &names))?;
    let mut moved = 0;
    for row in &src {
        let (schema, name): (String, String) = (row.get(0), row.get(1));
        let Some(src_value) = row.get::<_, Option<i64>>(2) else {
            continue;
        };
        let Some(there) = dst
            .iter()
            .find(|d| d.get::<_, String>(0) == schema && d.get::<_, String>(1) == name)
        else {
            return Err(DbError::Settings {
                db: to.db.clone(),
                message: format!(
                    "sequence {schema}.{name} is missing; create it like on '{}'",
                    from.db
                ),
            });
        };
        if there.get::<_, Option<i64>>(2).is_some_and(|v| v >= src_value) {
            continue;
        }
        let qualified = quote::qualified(&schema, &name);
        to.client
            .execute(
                "select setval($1::text::regclass, $2, true)",
                &[&qualified, &src_value],
            )
            .await
            .map_err(|e| DbError::query(&to.db, format!("advance sequence {schema}.{name}"), e))?;
        moved += 1;
    }
    Ok(moved)
}

/// `(schema, name, last value or null when never used)` of the wanted sequences.
async fn values(side: &Side, schemas: &[&str], names: &[&str]) -> Result<Vec<tokio_postgres::Row>, DbError> {
    side.client
        .query(
            "select schemaname::text, sequencename::text, last_value from pg_sequences \
             join unnest($1::text[], $2::text[]) w(s, n) on s = schemaname and n = sequencename",
            &[&schemas, &names],
        )
        .await
        .map_err(|e| DbError::query(&side.db, "read sequences", e))
}
