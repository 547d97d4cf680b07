//! TRUNCATE is captured by a statement trigger into `belt.truncates` and applied to
//! the other side before the round's rows, in the round's transaction (a round in
//! chunks applies them first, on their own), all tables of one round in one
//! statement so that foreign keys between them do not block it. The receiving session is in
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

use tokio_postgres::types::Type;
use tokio_postgres::{GenericClient, IsolationLevel, Transaction};

use super::plan::TablePlan;
use super::Side;
use crate::pg::prepared::Prepared;
use crate::pg::{quote, DbError};

/// The latest truncate of each table (or partition) in a batch.
#[derive(Debug, Clone)]
pub struct Truncate {
    /// The captured table, as `belt.truncates.rel` names it.
    rel: String,
    /// The table itself, or the one partition truncated.
    target: String,
    /// When, as text (`timestamptz`).
    at: String,
}

/// Reads the truncates of `tables` in `batch` on `from`. `prepared`: the cache of
/// `from`'s connection, for a `batch` whose text is the same every round (the atomic
/// round's `true`), so that the statement is planned once, not once per round.
pub async fn read(
    from: &Transaction<'_>,
    db: &str,
    prepared: Option<&Prepared>,
    tables: &[TablePlan],
    batch: &str,
) -> Result<Vec<Truncate>, DbError> {
    let rels: Vec<String> = tables.iter().map(|t| t.table.qualified()).collect();
    let filter = format!("{batch} and rel = any($1)");
    let sql = format!(
        "select rel, coalesce(part, rel), max(belt_changed_at)::text from belt.truncates t \
         where {filter} and (part is null or not exists (select 1 from belt.truncates w \
           where w.rel = t.rel and w.part is null and {filter})) \
         group by rel, part order by 1, 2"
    );
    let error = |e| DbError::query(db, "read truncates", e);
    let rows = match prepared {
        Some(p) => {
            let statement = p.get(from.client(), &sql).await.map_err(error)?;
            from.query(&statement, &[&rels]).await
        }
        None => from.query_typed(&sql, &[(&rels, Type::TEXT_ARRAY)]).await,
    };
    Ok(rows
        .map_err(error)?
        .iter()
        .map(|r| Truncate {
            rel: r.get(0),
            target: r.get(1),
            at: r.get(2),
        })
        .collect())
}

/// Applies `truncates` to `to` (`to_source`: whether it is a source itself, whose
/// later writes survive).
pub async fn apply(
    to: &impl GenericClient,
    db: &str,
    to_source: bool,
    tables: &[TablePlan],
    truncates: &[Truncate],
) -> Result<(), DbError> {
    let mut found = Vec::new();
    for t in truncates {
        let plan = tables.iter().find(|p| p.table.qualified() == t.rel);
        match plan {
            Some(plan) if to_source && keep_later_writes(to, db, plan, &t.target, &t.at).await? => {}
            _ => found.push(t.target.clone()),
        }
    }
    if !found.is_empty() {
        truncate(to, db, &found).await?;
    }
    Ok(())
}

/// Deletes the truncates of `tables` in `batch` from `from`, once they are applied.
pub async fn purge(
    from: &impl GenericClient,
    db: &str,
    tables: &[TablePlan],
    batch: &str,
) -> Result<(), DbError> {
    from.batch_execute(&purge_sql(tables, batch))
        .await
        .map_err(|e| DbError::query(db, "purge applied truncates", e))
}

/// The statement [`purge`] runs.
pub fn purge_sql(tables: &[TablePlan], batch: &str) -> String {
    let rels: Vec<String> = tables
        .iter()
        .map(|t| quote::literal(&t.table.qualified()))
        .collect();
    format!(
        "delete from belt.truncates where {batch} and rel = any(array[{}]::text[])",
        rels.join(", ")
    )
}

/// Applies the truncates of `from`'s batch to `to` on their own, before a round in
/// chunks; returns how many tables.
pub async fn apply_truncates(
    from: &mut Side,
    to: &Side,
    tables: &[TablePlan],
    batch: &str,
) -> Result<u64, DbError> {
    let stx = from
        .client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(|e| DbError::query(&from.db, "begin reading truncates", e))?;
    let latest = read(&stx, &from.db, None, tables, batch).await?;
    if latest.is_empty() {
        return Ok(0);
    }
    apply(&to.client, &to.db, to.source, tables, &latest).await?;
    purge(&stx, &from.db, tables, batch).await?;
    stx.commit()
        .await
        .map_err(|e| DbError::query(&from.db, "purge applied truncates", e))?;
    Ok(latest.len() as u64)
}

/// Truncates `rels` on `to`. ONLY keeps a legacy inheritance child out; a partitioned
/// table cannot be truncated ONLY, and its partitions are its rows.
async fn truncate(to: &impl GenericClient, db: &str, rels: &[String]) -> Result<(), DbError> {
    let targets: Vec<String> = to
        .query(
            "select case when c.relkind = 'p' then r else 'only ' || r end \
             from unnest($1::text[]) r join pg_class c on c.oid = r::regclass",
            &[&rels],
        )
        .await
        .map_err(|e| DbError::query(db, "look up truncated tables", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    to.batch_execute(&format!("truncate {}", targets.join(", ")))
        .await
        .map_err(|e| DbError::query(db, format!("truncate {}", rels.join(", ")), e))
}

/// When `to` (a source itself) changed rows of `plan`'s table after the truncate at
/// `at`, deletes the other rows of `target` (the table or one partition) by key and
/// returns true: those later writes survive. Returns false (truncate as usual) when
/// it has none.
async fn keep_later_writes(
    to: &impl GenericClient,
    db: &str,
    plan: &TablePlan,
    target: &str,
    at: &str,
) -> Result<bool, DbError> {
    let delta = plan.delta_sql();
    let later: bool = to
        .query_one(
            &format!("select exists (select 1 from {delta} where belt_changed_at > $1::text::timestamptz)"),
            &[&at],
        )
        .await
        .map_err(|e| DbError::query(db, "look for writes after a truncate", e))?
        .get(0);
    if !later {
        return Ok(false);
    }
    to.execute(
        &format!(
            "delete from {target} as t where not exists (select 1 from {delta} as d \
             where {} and d.belt_changed_at > $1::text::timestamptz)",
            plan.key_join("d", "t")
        ),
        &[&at],
    )
    .await
    .map_err(|e| {
        DbError::query(
            db,
            format!("truncate {target} as of the other side's truncate"),
            e,
        )
    })?;
    Ok(true)
}
