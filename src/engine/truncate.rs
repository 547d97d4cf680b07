//! TRUNCATE is captured by a statement trigger into `belt.truncates` and applied to
//! the other side before the round's rows, all tables of one round in one statement
//! so that foreign keys between them do not block it. The receiving session is in
//! replica mode, so the truncate is not captured there again.
//!
//! A truncate of one partition of a captured partitioned table names the table in
//! `rel` and the partition in `part`; the same partition is truncated on the other
//! side (the partition follower keeps both sides' partitions alike). A truncate of
//! the whole table in the same batch supersedes its partitions' ones.
//!
//! With two sources a truncate takes part in latest-wins (rule 4): it deletes every
//! row as of its time. A row the receiving side wrote later (its delta is newer than
//! the truncate) stays, and the round then sends it to the side that truncated; the
//! other rows are deleted by key instead of truncated.

use tokio_postgres::IsolationLevel;

use super::plan::TablePlan;
use super::Side;
use crate::pg::DbError;

/// Applies the truncates of `from`'s batch to `to`; returns how many tables.
pub async fn apply_truncates(
    from: &mut Side,
    to: &Side,
    tables: &[TablePlan],
    batch: &str,
) -> Result<u64, DbError> {
    let rels: Vec<String> = tables.iter().map(|t| t.table.qualified()).collect();
    let stx = from
        .client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(|e| DbError::query(&from.db, "begin reading truncates", e))?;
    let filter = format!("{batch} and rel = any($1)");
    // (table, partition or the table itself, time of the latest truncate)
    let latest: Vec<(String, String, String)> = stx
        .query(
            &format!(
                "select rel, coalesce(part, rel), max(belt_changed_at)::text from belt.truncates t \
                 where {filter} and (part is null or not exists (select 1 from belt.truncates w \
                   where w.rel = t.rel and w.part is null and {filter})) \
                 group by rel, part order by 1, 2"
            ),
            &[&rels],
        )
        .await
        .map_err(|e| DbError::query(&from.db, "read truncates", e))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    if latest.is_empty() {
        return Ok(0);
    }
    let mut found = Vec::new();
    for (rel, target, at) in &latest {
        let plan = tables.iter().find(|t| &t.table.qualified() == rel);
        match plan {
            Some(plan) if to.source && keep_later_writes(to, plan, target, at).await? => {}
            _ => found.push(target.clone()),
        }
    }
    if !found.is_empty() {
        truncate(to, &found).await?;
    }
    stx.execute(&format!("delete from belt.truncates where {filter}"), &[&rels])
        .await
        .map_err(|e| DbError::query(&from.db, "purge applied truncates", e))?;
    stx.commit()
        .await
        .map_err(|e| DbError::query(&from.db, "purge applied truncates", e))?;
    Ok(latest.len() as u64)
}

/// Truncates `rels` on `to`. ONLY keeps a legacy inheritance child out; a partitioned
/// table cannot be truncated ONLY, and its partitions are its rows.
async fn truncate(to: &Side, rels: &[String]) -> Result<(), DbError> {
    let targets: Vec<String> = to
        .client
        .query(
            "select case when c.relkind = 'p' then r else 'only ' || r end \
             from unnest($1::text[]) r join pg_class c on c.oid = r::regclass",
            &[&rels],
        )
        .await
        .map_err(|e| DbError::query(&to.db, "look up truncated tables", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    to.client
        .batch_execute(&format!("truncate {}", targets.join(", ")))
        .await
        .map_err(|e| DbError::query(&to.db, format!("truncate {}", rels.join(", ")), e))
}

/// When `to` (a source itself) changed rows of `plan`'s table after the truncate at
/// `at`, deletes the other rows of `target` (the table or one partition) by key and
/// returns true: those later writes survive.
/// Returns false (truncate as usual) when it has none.
async fn keep_later_writes(to: &Side, plan: &TablePlan, target: &str, at: &str) -> Result<bool, DbError> {
    let delta = plan.delta_sql();
    let later: bool = to
        .client
        .query_one(
            &format!("select exists (select 1 from {delta} where belt_changed_at > $1::text::timestamptz)"),
            &[&at],
        )
        .await
        .map_err(|e| DbError::query(&to.db, "look for writes after a truncate", e))?
        .get(0);
    if !later {
        return Ok(false);
    }
    let t = target;
    to.client
        .execute(
            &format!(
                "delete from {t} as t where not exists (select 1 from {delta} as d \
                 where {} and d.belt_changed_at > $1::text::timestamptz)",
                plan.key_join("d", "t")
            ),
            &[&at],
        )
        .await
        .map_err(|e| DbError::query(&to.db, format!("truncate {t} as of the other side's truncate"), e))?;
    Ok(true)
}
