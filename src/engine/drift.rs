//! Schema drift during replication: before each round the columns of every table are
//! read again on both sides. A table changed alike on both (a migration applied to
//! both databases) is re-planned and goes on; a table whose sides differ (a column
//! added on one only) is left out of the round with an error naming the table and
//! the column — its changes wait in the delta table, nothing is lost — while the
//! other tables go on. Once the sides match again it resumes by itself.

use super::{Side, TablePlan};
use crate::pg::introspect::{describe_table, TableName};
use crate::pg::{quote, DbError};
use crate::tables::column_differences;

/// A table left out of the round, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub table: String,
    pub message: String,
}

/// The columns of `plans`' tables, one row per table found, numbered as in `plans`
/// from 1. Each table is found by its name (`to_regclass`) and its columns by the
/// catalog's index: the check costs the same however many tables the database
/// holds (matching names in `pg_class` read all of it, every round). The names go
/// in as literals, not parameters: the text is then the same every round and its
/// one plan is kept (prepared with parameters, PostgreSQL planned it anew on every
/// call).
fn signatures_sql(plans: &[TablePlan]) -> String {
    let tables: Vec<String> = plans
        .iter()
        .map(|p| format!("to_regclass({})", quote::literal(&p.table.qualified())))
        .collect();
    format!(
        "select x.i, string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) \
                || case when a.attgenerated <> '' then ' generated' else '' end, ', ' order by a.attnum) \
           from unnest(array[{}]::oid[]) with ordinality x(rel, i) \
           join pg_attribute a on a.attrelid = x.rel \
          where a.attnum > 0 and not a.attisdropped \
          group by x.i",
        tables.join(", ")
    )
}

fn signature(plan: &TablePlan) -> String {
    plan.table
        .columns
        .iter()
        .map(|c| {
            format!(
                "{} {}{}",
                c.name,
                c.type_name,
                if c.generated { " generated" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each plan's columns on `side` as [`signature`] writes them, `None` for a table
/// not there.
async fn signatures(side: &Side, plans: &[TablePlan]) -> Result<Vec<Option<String>>, DbError> {
    let error = |e| DbError::query(&side.db, "read table columns", e);
    let statement = side
        .prepared
        .get(&side.client, &signatures_sql(plans))
        .await
        .map_err(error)?;
    let mut found = vec![None; plans.len()];
    for row in side.client.query(&statement, &[]).await.map_err(error)? {
        let i: i64 = row.get(0);
        found[i as usize - 1] = Some(row.get(1));
    }
    Ok(found)
}

/// Re-plans tables changed alike on both sides; returns the tables to leave out.
pub async fn check(sides: &[Side; 2], plans: &mut [TablePlan]) -> Result<Vec<Drift>, DbError> {
    if plans.is_empty() {
        return Ok(Vec::new());
    }
    let found = tokio::try_join!(signatures(&sides[0], plans), signatures(&sides[1], plans))?;
    let mut drifts = Vec::new();
    for (i, plan) in plans.iter_mut().enumerate() {
        let now = [found.0[i].as_ref(), found.1[i].as_ref()];
        let planned = signature(plan);
        if now.iter().all(|s| *s == Some(&planned)) {
            continue;
        }
        if now[0].is_some() && now[0] == now[1] {
            // Changed alike on both sides: take the new columns.
            let name = TableName {
                schema: plan.table.schema.clone(),
                name: plan.table.name.clone(),
            };
            if let Some(info) = describe_table(&sides[0].client, &sides[0].db, &name).await? {
                *plan = TablePlan::new(&info, &plan.delta);
                tracing::info!(table = %plan.table.display_name(), "columns changed on both databases: re-planned");
            }
            continue;
        }
        let mut infos = Vec::new();
        for side in sides {
            let name = TableName {
                schema: plan.table.schema.clone(),
                name: plan.table.name.clone(),
            };
            infos.push(describe_table(&side.client, &side.db, &name).await?);
        }
        let message = match (&infos[0], &infos[1]) {
            (Some(a), Some(b)) => column_differences(a, b)
                .iter()
                .map(|d| {
                    d.replace("the source", &format!("'{}'", sides[0].db))
                        .replace("the target", &format!("'{}'", sides[1].db))
                })
                .collect::<Vec<_>>()
                .join("; "),
            _ => "the table is missing on one side".to_string(),
        };
        drifts.push(Drift {
            table: plan.table.display_name(),
            message: format!(
                "table {} stopped: {message}; its changes wait until both databases have the same columns",
                plan.table.display_name()
            ),
        });
    }
    Ok(drifts)
}
