//! Triggers and rules enabled ALWAYS on a receiving table fire for belt's writes too,
//! although belt applies in replica mode (rule 3): a trigger then acts twice (once on
//! each side), an ALSO rule makes belt's upsert fail, and an INSTEAD rule can swallow
//! replicated rows without an error. precheck names each one.

use tokio_postgres::Client;

use super::precheck::{Level, Report};
use crate::pg::introspect::TableInfo;
use crate::pg::DbError;

/// Adds a finding for every trigger and rule enabled ALWAYS on `tables` in `c`'s
/// database (a receiver of the sync).
pub async fn check(report: &mut Report, db: &str, c: &Client, tables: &[TableInfo]) -> Result<(), DbError> {
    let names: Vec<String> = tables.iter().map(TableInfo::qualified).collect();
    let rows = c
        .query(
            "with t as (select to_regclass(n) oid from unnest($1::text[]) n) \
             select 'trigger', quote_ident(tgname), tgrelid::regclass::text from pg_trigger, t \
              where tgrelid = t.oid and tgenabled = 'A' and not tgisinternal \
             union all \
             select 'rule', quote_ident(rulename), ev_class::regclass::text from pg_rewrite, t \
              where ev_class = t.oid and ev_enabled = 'A' and rulename <> '_RETURN' order by 1, 3, 2",
            &[&names],
        )
        .await
        .map_err(|e| DbError::query(db, "list triggers and rules enabled ALWAYS", e))?;
    for r in rows {
        let (kind, name, table): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        if kind == "rule" {
            report.add(
                Level::Blocker,
                db,
                "rules",
                format!("rule {name} on {table} is ENABLE ALWAYS: it rewrites belt's replicated writes (an INSTEAD rule drops them unsaid); ALTER TABLE {table} ENABLE RULE {name} limits it to the application's writes"),
            );
        } else {
            report.add(
                Level::Warning,
                db,
                "triggers",
                format!("trigger {name} on {table} is ENABLE ALWAYS: it fires for belt's replicated writes as well as on the side where the change was made"),
            );
        }
    }
    Ok(())
}
