//! Whether a sync covers its databases: a table that exists on either side and that
//! no sync of the two databases replicates would be left behind by a cutover without
//! a word. verify names such tables and cutover refuses them unless excluded by name.

use serde::Serialize;
use tokio_postgres::Client;

use crate::pg::introspect::list_tables;
use crate::pg::DbError;

/// A table nobody replicates between the two databases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uncovered {
    /// The database it exists on (the first of the two when on both).
    pub db: String,
    /// `schema.table`.
    pub table: String,
    /// Whether the other database has it too.
    pub on_both: bool,
}

/// The tables of either database (outside schema belt) missing from `replicated`
/// (`schema.table` names) and from `excluded`.
pub async fn uncovered(
    sides: [(&Client, &str); 2],
    replicated: &[String],
    excluded: &[String],
) -> Result<Vec<Uncovered>, DbError> {
    let mut names = [Vec::new(), Vec::new()];
    for (i, (client, db)) in sides.iter().enumerate() {
        names[i] = list_tables(client, db, None)
            .await?
            .into_iter()
            .map(|t| format!("{}.{}", t.schema, t.name))
            .collect::<Vec<_>>();
    }
    let skip = |t: &String| replicated.contains(t) || excluded.contains(t);
    let mut found: Vec<Uncovered> = Vec::new();
    for (i, list) in names.iter().enumerate() {
        for t in list.iter().filter(|t| !skip(t)) {
            if found.iter().any(|u| &u.table == t) {
                continue;
            }
            found.push(Uncovered {
                db: sides[i].1.to_string(),
                table: t.clone(),
                on_both: names[1 - i].contains(t),
            });
        }
    }
    Ok(found)
}

impl Uncovered {
    /// One line for the operator.
    pub fn describe(&self) -> String {
        if self.on_both {
            format!("{} exists on both databases and is not replicated", self.table)
        } else {
            format!(
                "{} exists on '{}' only and is not replicated",
                self.table, self.db
            )
        }
    }
}
