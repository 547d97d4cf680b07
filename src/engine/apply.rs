//! Rule 2 of DESIGN.md: apply is idempotent and state-based.
//!
//! A delta row says only "this key changed". For a chunk of keys the source's
//! *current* rows are streamed into the target (binary COPY into temp tables), the
//! target's rows of those keys are deleted and the fetched rows inserted. A key whose
//! row is gone is thereby deleted; a key update deletes the old key and writes the
//! new one. Running the same chunk twice writes the same state, which is what makes
//! at-least-once delivery with positions kept in SQLite safe.
//!
//! The target session runs with `session_replication_role = replica`: capture and
//! foreign-key triggers do not fire, so applied rows are not captured again and
//! ON DELETE CASCADE does not reach rows the source still has.

use tokio_postgres::{Client, IsolationLevel};

use super::pipe::{pipe, CopyEnd};
use super::plan::TablePlan;
use crate::pg::{quote, DbError};

/// Which databases a round connects, by name (for errors).
#[derive(Debug, Clone, Copy)]
pub struct Ends<'a> {
    pub src: &'a str,
    pub dst: &'a str,
}

/// What one chunk did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChunkResult {
    /// Keys processed (deleted or written).
    pub keys: u64,
    /// Rows written.
    pub rows: u64,
}

/// Applies the next chunk (at most `limit` keys, in key order) of `table`'s batch,
/// in one transaction on each side: target committed first, then the consumed deltas
/// deleted on the source. `None` when the batch holds no more keys of this table.
pub async fn apply_chunk(
    ends: Ends<'_>,
    src: &mut Client,
    dst: &mut Client,
    table: &TablePlan,
    batch: &str,
    limit: i64,
) -> Result<Option<ChunkResult>, DbError> {
    let name = table.table.display_name();
    let stx = src
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(|e| DbError::query(ends.src, "begin chunk", e))?;
    let Some(hi) = last_key_of_chunk(stx.client(), ends.src, table, batch, limit).await? else {
        return Ok(None);
    };
    let chunk = format!("{batch} and {}", table.key_at_most(&hi));

    let dtx = dst
        .transaction()
        .await
        .map_err(|e| DbError::query(ends.dst, "begin chunk", e))?;
    let keys_tmp = table.temp_table('k');
    let rows_tmp = table.temp_table('r');
    let cols = quote::ident_list(&table.write_cols);
    dtx.batch_execute(&format!(
        "create temp table if not exists {keys_tmp} on commit delete rows as \
         select {keys} from {t} with no data; \
         create temp table if not exists {rows_tmp} on commit delete rows as \
         select {cols} from {t} with no data",
        keys = table.key_list(),
        t = table.table.qualified(),
    ))
    .await
    .map_err(|e| DbError::query(ends.dst, format!("prepare apply of {name}"), e))?;

    let delta = table.delta_sql();
    let keys = pipe(
        CopyEnd {
            db: ends.src,
            client: stx.client(),
            sql: format!(
                "copy (select distinct {k} from {delta} where {chunk}) to stdout (format binary)",
                k = table.key_list()
            ),
        },
        CopyEnd {
            db: ends.dst,
            client: dtx.client(),
            sql: format!("copy {keys_tmp} from stdin (format binary)"),
        },
        &format!("changed keys of {name}"),
    )
    .await?;
    let rows = pipe(
        CopyEnd {
            db: ends.src,
            client: stx.client(),
            sql: format!(
                "copy (select {cols} from {t} where ({k}) in (select {k} from {delta} where {chunk})) \
                 to stdout (format binary)",
                t = table.table.qualified(),
                k = table.key_list()
            ),
        },
        CopyEnd {
            db: ends.dst,
            client: dtx.client(),
            sql: format!("copy {rows_tmp} ({cols}) from stdin (format binary)"),
        },
        &format!("rows of {name}"),
    )
    .await?;

    let overriding = if table.identity {
        "overriding system value "
    } else {
        ""
    };
    dtx.batch_execute(&format!(
        "delete from {t} as t using {keys_tmp} as k where {join}; \
         insert into {t} ({cols}) {overriding}select {cols} from {rows_tmp}",
        t = table.table.qualified(),
        join = table.key_join("t", "k"),
    ))
    .await
    .map_err(|e| DbError::query(ends.dst, format!("apply rows of {name}"), e))?;
    dtx.commit()
        .await
        .map_err(|e| DbError::query(ends.dst, format!("commit rows of {name}"), e))?;

    stx.execute(&format!("delete from {delta} where {chunk}"), &[])
        .await
        .map_err(|e| DbError::query(ends.src, format!("purge applied deltas of {name}"), e))?;
    stx.commit()
        .await
        .map_err(|e| DbError::query(ends.src, format!("purge applied deltas of {name}"), e))?;
    Ok(Some(ChunkResult { keys, rows }))
}

/// The largest key among the first `limit` distinct keys of the batch, as text.
async fn last_key_of_chunk(
    src: &Client,
    db: &str,
    table: &TablePlan,
    batch: &str,
    limit: i64,
) -> Result<Option<Vec<String>>, DbError> {
    let k = table.key_list();
    let text_cols = each_key(table, |c| format!("c.{c}::text"));
    let desc = each_key(table, |c| format!("c.{c} desc"));
    let sql = format!(
        "select {text_cols} from (select distinct {k} from {delta} where {batch} \
         order by {k} limit {limit}) c order by {desc} limit 1",
        delta = table.delta_sql(),
    );
    let row = src.query_opt(&sql, &[]).await.map_err(|e| {
        DbError::query(
            db,
            format!("read changed keys of {}", table.table.display_name()),
            e,
        )
    })?;
    Ok(row.map(|r| (0..table.key.len()).map(|i| r.get::<_, String>(i)).collect()))
}

/// Sets the target session up for applying: replica role, so nothing echoes.
pub async fn prepare_target(dst: &Client, db: &str) -> Result<(), DbError> {
    dst.batch_execute("set session_replication_role = replica")
        .await
        .map_err(|e| {
            DbError::query(
                db,
                "set session_replication_role = replica (the apply role needs superuser, \
                 rds_superuser, or on PostgreSQL 15+ GRANT SET ON PARAMETER session_replication_role)",
                e,
            )
        })
}

fn each_key(table: &TablePlan, f: impl Fn(&str) -> String) -> String {
    table
        .key
        .iter()
        .map(|k| f(&quote::ident(k)))
        .collect::<Vec<_>>()
        .join(", ")
}
