//! Rule 2 of DESIGN.md: apply is idempotent and state-based — one chunk, both ways.
//!
//! A delta row says only "this key changed". A chunk is a key range of one table. Each
//! source side summarizes its changed keys in the range (key, newest `changed_at`) and
//! streams the summary to the other side; conflicts are decided there (rule 4). Then
//! each source side streams the keys it wins, each with its *current* row or a mark
//! that it has none any more, into one temp table of the other side (one binary
//! COPY), and the receiver deletes its rows of the keys marked gone and upserts the
//! others (see [`TablePlan::apply_sql`]). One way, the summary is not shipped:
//! a target decides nothing. A key update deletes the old key and writes the new
//! one. Running the same chunk twice writes the same state, which is what makes
//! at-least-once delivery safe.
//!
//! Both sides read and write in one REPEATABLE READ transaction each; an application
//! write to a row after our snapshot makes our write fail with a serialization error,
//! and the round is retried rather than overwriting it. Consumed deltas — those the
//! chunk's snapshot saw in the range — are deleted only after both commits. One
//! exception: while a truncate of the table committed after the round's snapshot is
//! pending (the next round applies it, before its rows), only the deltas of the
//! round's batch are deleted; the others stay, so that the rows written with or after
//! that truncate are applied again after it, not deleted by it for good.

use futures_util::future::try_join_all;
use tokio_postgres::{IsolationLevel, Transaction};

use super::conflict::{Conflict, ConflictKind, Strategy};
use super::plan::TablePlan;
use super::{EngineError, Side};
use crate::pg::pipe::{pipe, Copy};
use crate::pg::prepared::Prepared;
use crate::pg::{quote, DbError};

/// What one chunk did.
#[derive(Debug, Default, Clone)]
pub struct ChunkResult {
    /// Rows written into the first and into the second database.
    pub rows_into: [u64; 2],
    /// Keys sent from the first and from the second database.
    pub keys_from: [u64; 2],
    pub conflicts: Vec<Conflict>,
}

impl ChunkResult {
    /// Adds what another chunk (or table) did.
    pub fn add(&mut self, other: ChunkResult) {
        for i in 0..2 {
            self.rows_into[i] += other.rows_into[i];
            self.keys_from[i] += other.keys_from[i];
        }
        self.conflicts.extend(other.conflicts);
    }
}

/// A chunk that failed, with the last key of its range once that was known, so that
/// the round can narrow a failing range down to the one row that cannot be applied.
#[derive(Debug)]
pub struct ChunkError {
    pub last_key: Option<Vec<String>>,
    pub error: EngineError,
}

impl From<DbError> for ChunkError {
    fn from(e: DbError) -> Self {
        ChunkError {
            last_key: None,
            error: e.into(),
        }
    }
}

/// Applies the next chunk of `table` in both directions: the first `limit` changed
/// keys after `after` (from the start when `None`). `batches[i]` is the batch filter
/// of side `i` when it is a source. `None` when neither side has keys left.
pub async fn apply_chunk(
    sides: &mut [Side; 2],
    table: &TablePlan,
    batches: &[Option<String>; 2],
    after: Option<&[String]>,
    limit: i64,
    strategy: Strategy,
) -> Result<Option<ChunkResult>, ChunkError> {
    let above = after.map(|lo| table.key_above(lo));
    let filters = batches.clone().map(|batch| {
        batch.map(|b| match &above {
            Some(a) => format!("{b} and {a}"),
            None => b,
        })
    });
    let [a, b] = sides;
    let dbs = [a.db.as_str(), b.db.as_str()];
    // Both sides at once: a round trip saved is a chunk sooner on a distant link.
    let ((ta, snap_a, hi_a), (tb, snap_b, hi_b)) = tokio::try_join!(
        open_side(
            &mut a.client,
            dbs[0],
            &a.fence,
            table,
            filters[0].as_deref(),
            limit
        ),
        open_side(
            &mut b.client,
            dbs[1],
            &b.fence,
            table,
            filters[1].as_deref(),
            limit
        ),
    )?;
    let txs = [&ta, &tb];
    let snaps = [snap_a, snap_b];
    let hi = match [hi_a, hi_b] {
        [None, None] => return Ok(None),
        [Some(h), None] | [None, Some(h)] => h.key,
        [Some(x), Some(y)] => {
            // The range may reach past a side's last key only when that side has
            // no more keys: then both sides' changes fit in one chunk, not two.
            match (x.keys < limit, y.keys < limit) {
                (true, false) => y.key,
                (false, true) => x.key,
                (both_done, _) => {
                    let x_first = first_is_smaller(txs[0], dbs[0], table, &x.key, &y.key).await?;
                    // Both done: the larger end; neither: the smaller one.
                    if x_first == both_done {
                        y.key
                    } else {
                        x.key
                    }
                }
            }
        }
    };
    let range = table.key_range(after, Some(&hi));
    let has_batch = [batches[0].is_some(), batches[1].is_some()];
    let prepared = [&a.prepared, &b.prepared];
    let applied = apply_range(txs, dbs, prepared, table, &range, has_batch, strategy).await;
    let result = applied.map_err(|error| ChunkError {
        last_key: Some(hi.clone()),
        error,
    })?;
    // Either order of the two commits leaves the same thing behind when one of them
    // fails: nothing is purged, and the chunk is applied again later.
    tokio::try_join!(
        async {
            ta.commit()
                .await
                .map_err(|e| DbError::query(dbs[0], "commit chunk", e))
        },
        async {
            tb.commit()
                .await
                .map_err(|e| DbError::query(dbs[1], "commit chunk", e))
        },
    )?;
    let [a, b] = sides;
    tokio::try_join!(
        purge(a, table, &range, snaps[0].as_deref(), batches[0].as_deref()),
        purge(b, table, &range, snaps[1].as_deref(), batches[1].as_deref()),
    )?;
    Ok(Some(result))
}

/// Applies the changes of `table` in `range` both ways within the open transactions
/// `txs`: summaries, conflicts, then each source's winning rows. `has_batch[i]`: side
/// `i` is a source.
pub(super) async fn apply_range(
    txs: [&Transaction<'_>; 2],
    dbs: [&str; 2],
    prepared: [&Prepared; 2],
    table: &TablePlan,
    range: &str,
    has_batch: [bool; 2],
    strategy: Strategy,
) -> Result<ChunkResult, EngineError> {
    let mut result = ChunkResult::default();
    // Two ways only: each source's summary goes to the other side, where it decides
    // which of that side's changes win, and the keys changed on both are conflicts.
    // One way a target decides nothing.
    if has_batch == [true, true] {
        let mut shipped = [0; 2];
        for i in 0..2 {
            shipped[i] = ship_summary(txs[i], txs[1 - i], [dbs[i], dbs[1 - i]], table, range).await?;
        }
        // A key can be in conflict only where both sides changed keys in the range.
        if shipped[0] > 0 && shipped[1] > 0 {
            result.conflicts = conflicts(txs, dbs, table, range, strategy).await?;
        }
        if strategy == Strategy::Abort && !result.conflicts.is_empty() {
            return Err(EngineError::ConflictAbort {
                conflicts: result.conflicts,
            });
        }
    }
    for i in 0..2 {
        if has_batch[i] {
            // This side's winning keys and rows, applied on the other.
            let copy = winners_copy(table, range, strategy, i == 0);
            let (from, to) = ((dbs[i], txs[i].client()), (dbs[1 - i], txs[1 - i].client()));
            let keys = pipe(from, to, &copy).await?;
            result.keys_from[i] = keys;
            if keys > 0 {
                result.rows_into[1 - i] = apply_sent(txs[1 - i], dbs[1 - i], prepared[1 - i], table).await?;
            }
        }
    }
    Ok(result)
}

/// Deletes the deltas of `range` that the chunk's snapshot `snap` saw — only those
/// of the round's `batch` while a truncate newer than the batch is pending (none when
/// the side is not a source).
pub(super) async fn purge(
    side: &mut Side,
    table: &TablePlan,
    range: &str,
    snap: Option<&str>,
    batch: Option<&str>,
) -> Result<(), DbError> {
    let (Some(snap), Some(batch)) = (snap, batch) else {
        return Ok(());
    };
    let deleted = side
        .client
        .execute(&purge_sql(table, range, snap, batch), &[])
        .await
        .map_err(|e| {
            DbError::query(
                &side.db,
                format!("purge applied deltas of {}", table.table.display_name()),
                e,
            )
        })?;
    side.purged.add(&table.delta_sql(), deleted);
    side.purged.vacuum_due(&side.client, &side.db).await;
    Ok(())
}

/// The statement [`purge`] runs.
pub(super) fn purge_sql(table: &TablePlan, range: &str, snap: &str, batch: &str) -> String {
    format!(
        "delete from {delta} where {range} and txid_visible_in_snapshot(belt_txid, {snap}::txid_snapshot) \
         and ({batch} or not exists (select 1 from belt.truncates where rel = {rel} and not {batch}))",
        delta = table.delta_sql(),
        snap = quote::literal(snap),
        rel = quote::literal(&table.table.qualified()),
    )
}

/// [`purge_sql`] for a range of the whole delta whose batch is the purge's own
/// snapshot (an atomic round's): every delta row visible in that snapshot, `$1`.
/// The text is the same every round, so it can be prepared once per connection.
pub(super) fn purge_snapshot_sql(table: &TablePlan) -> String {
    format!(
        "delete from {} where txid_visible_in_snapshot(belt_txid, $1::text::txid_snapshot)",
        table.delta_sql()
    )
}

/// Begins one side's chunk transaction and, pipelined in one round trip, prepares
/// its temp tables and — on a source, `filter` being its batch — reads its snapshot
/// and the last key of its part of the chunk.
async fn open_side<'c>(
    client: &'c mut tokio_postgres::Client,
    db: &str,
    fence: &str,
    table: &TablePlan,
    filter: Option<&str>,
    limit: i64,
) -> Result<(Transaction<'c>, Option<String>, Option<ChunkEnd>), DbError> {
    let tx = begin(client, db, fence).await?;
    let sql = temp_tables_sql(table);
    let temp = create_temp_tables(&tx, db, table, &sql);
    let Some(filter) = filter else {
        temp.await?;
        return Ok((tx, None, None));
    };
    let (snap, hi, ()) = tokio::try_join!(
        chunk_snapshot(&tx, db),
        last_key_of_chunk(&tx, db, table, filter, limit),
        temp
    )?;
    Ok((tx, Some(snap), hi))
}

async fn chunk_snapshot(tx: &Transaction<'_>, db: &str) -> Result<String, DbError> {
    Ok(tx
        .query_typed_one("select txid_current_snapshot()::text", &[])
        .await
        .map_err(|e| DbError::query(db, "read chunk snapshot", e))?
        .get(0))
}

/// Begins a round's or chunk's transaction. Its lock waits end before PostgreSQL's
/// deadlock check (`deadlock_timeout`, 1 s by default) would pick a victim: when
/// belt and an application transaction wait on each other, belt gives up and tries
/// again, and the application's transaction is never the one cancelled.
///
/// `fence` ([`Side::fence`]) goes in the same round trip: a daemon that lost the sync
/// fails here, before it writes anything.
pub(super) async fn begin<'c>(
    client: &'c mut tokio_postgres::Client,
    db: &str,
    fence: &str,
) -> Result<Transaction<'c>, DbError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(|e| DbError::query(db, "begin chunk", e))?;
    let setup = if fence.is_empty() {
        LOCK_TIMEOUT.to_string()
    } else {
        format!("{LOCK_TIMEOUT}; {fence}")
    };
    tx.batch_execute(&setup)
        .await
        .map_err(|e| DbError::query(db, "begin chunk", e))?;
    Ok(tx)
}

/// How long a round waits for a row lock the application holds.
const LOCK_TIMEOUT: &str = "set local lock_timeout = '500ms'";

/// Where one side's part of a chunk ends.
struct ChunkEnd {
    /// The largest key among the first `limit` distinct keys of the batch, as text.
    key: Vec<String>,
    /// How many keys that is: fewer than `limit` means the side has no more.
    keys: i64,
}

async fn last_key_of_chunk(
    tx: &Transaction<'_>,
    db: &str,
    table: &TablePlan,
    batch: &str,
    limit: i64,
) -> Result<Option<ChunkEnd>, DbError> {
    let k = table.key_list();
    let sql = format!(
        "select {text_cols}, count(*) over () from (select distinct {k} from {delta} where {batch} \
         order by {k} limit {limit}) c order by {desc} limit 1",
        text_cols = each_key(table, |c| format!("c.{c}::text")),
        desc = each_key(table, |c| format!("c.{c} desc")),
        delta = table.delta_sql(),
    );
    let row = tx.query_typed_opt(&sql, &[]).await.map_err(|e| {
        DbError::query(
            db,
            format!("read changed keys of {}", table.table.display_name()),
            e,
        )
    })?;
    let n = table.key.len();
    Ok(row.map(|r| ChunkEnd {
        key: (0..n).map(|i| r.get::<_, String>(i)).collect(),
        keys: r.get(n),
    }))
}

/// Whether key `x` sorts at or before `y`, compared by the database (collation and
/// type order).
async fn first_is_smaller(
    tx: &Transaction<'_>,
    db: &str,
    table: &TablePlan,
    x: &[String],
    y: &[String],
) -> Result<bool, DbError> {
    let sql = format!("select ({}) <= ({})", table.key_values(x), table.key_values(y));
    Ok(tx
        .query_typed_one(&sql, &[])
        .await
        .map_err(|e| DbError::query(db, "compare keys", e))?
        .get(0))
}

/// The statement that makes `table`'s two temp tables (`r`, the rows sent here; `p`,
/// the other side's summary) on a session that does not have them yet. They live as
/// long as the session; their rows, until the commit.
pub(super) fn temp_tables_sql(table: &TablePlan) -> String {
    let t = table.table.qualified();
    format!(
        "create temp table if not exists {rows} on commit delete rows as \
         select {cols}, null::boolean as belt_gone from {t} with no data; \
         create temp table if not exists {peer} on commit delete rows as \
         select {k}, null::timestamptz as belt_changed_at from {t} with no data",
        rows = table.temp_table('r'),
        peer = table.temp_table('p'),
        cols = quote::ident_list(&table.sent_cols()),
        k = table.key_list(),
    )
}

/// Runs `table`'s [`temp_tables_sql`] (`sql`) in `tx`.
pub(super) async fn create_temp_tables(
    tx: &Transaction<'_>,
    db: &str,
    table: &TablePlan,
    sql: &str,
) -> Result<(), DbError> {
    tx.batch_execute(sql)
        .await
        .map_err(|e| DbError::query(db, format!("prepare apply of {}", table.table.display_name()), e))
}

/// `select k…, max(changed_at)`: this side's changed keys in the range.
fn summary_sql(table: &TablePlan, range: &str) -> String {
    format!(
        "select {k}, max(belt_changed_at) as belt_changed_at from {delta} where {range} group by {k}",
        k = table.key_list(),
        delta = table.delta_sql()
    )
}

/// The COPY that ships this side's summary of `range` into the other side's temp table.
pub(super) fn summary_copy(table: &TablePlan, range: &str) -> Copy {
    Copy {
        out: format!("copy ({}) to stdout (format binary)", summary_sql(table, range)),
        into: format!("copy {} from stdin (format binary)", table.temp_table('p')),
        what: format!("changed keys of {}", table.table.display_name()),
    }
}

async fn ship_summary(
    from: &Transaction<'_>,
    to: &Transaction<'_>,
    dbs: [&str; 2],
    table: &TablePlan,
    range: &str,
) -> Result<u64, DbError> {
    let copy = summary_copy(table, range);
    pipe((dbs[0], from.client()), (dbs[1], to.client()), &copy).await
}

/// The keys this side wins: changed here and not won by the peer's change.
fn winners_sql(table: &TablePlan, range: &str, strategy: Strategy, i_am_first: bool) -> String {
    format!(
        "select {sk} from ({summary}) s where not exists \
         (select 1 from {peer} p where {join} and ({wins}))",
        sk = quote::prefixed_list("s", &table.key),
        summary = summary_sql(table, range),
        peer = table.temp_table('p'),
        join = table.key_join("p", "s"),
        wins = strategy.peer_wins_sql(i_am_first),
    )
}

/// The COPY that streams the keys this side wins in `range`, each with its current
/// row or a mark that it has none, into the other side's temp table.
pub(super) fn winners_copy(table: &TablePlan, range: &str, strategy: Strategy, i_am_first: bool) -> Copy {
    let mut copy = winners_rows(table, range, strategy, i_am_first);
    copy.out = format!("copy ({}) to stdout (format binary)", copy.out);
    copy
}

/// [`winners_copy`] with a query in place of the COPY TO, for
/// [`crate::pg::pipe::pipe_rows_each`].
pub(super) fn winners_rows(table: &TablePlan, range: &str, strategy: Strategy, i_am_first: bool) -> Copy {
    Copy {
        out: table.sent_sql(&winners_sql(table, range, strategy, i_am_first)),
        into: format!(
            "copy {} ({}, belt_gone) from stdin (format binary)",
            table.temp_table('r'),
            quote::ident_list(&table.sent_cols())
        ),
        what: format!("rows of {}", table.table.display_name()),
    }
}

/// Applies the rows [`winners_copy`] loaded into `to`'s temp table; returns the rows
/// written. The statements are prepared once per connection (`prepared` is `to`'s
/// cache: planning them each round was most of their time) and go out pipelined, in
/// order, the count behind them.
pub(super) async fn apply_sent(
    to: &Transaction<'_>,
    db: &str,
    prepared: &Prepared,
    table: &TablePlan,
) -> Result<u64, DbError> {
    let name = table.table.display_name();
    let error = |e| DbError::query(db, format!("apply rows of {name}"), e);
    let sent = table.temp_table('r');
    let mut sql = table.apply_sql(&sent);
    sql.push(format!("select count(*) from {sent} where not belt_gone"));
    let statements = try_join_all(sql.iter().map(|s| prepared.get(to.client(), s)))
        .await
        .map_err(error)?;
    let (count, writes) = statements.split_last().expect("the count is last");
    // Each is sent on its first poll, and both joins poll in order.
    let (applied, rows) = tokio::join!(
        try_join_all(writes.iter().map(|s| to.execute(s, &[]))),
        to.query_one(count, &[])
    );
    // The apply's own error, not the count's "transaction is aborted".
    applied.map_err(error)?;
    Ok(rows.map_err(error)?.get::<_, i64>(0) as u64)
}

/// Keys changed on both sides in the range, decided as `winners_sql` decides them.
pub(super) async fn conflicts(
    txs: [&Transaction<'_>; 2],
    dbs: [&str; 2],
    table: &TablePlan,
    range: &str,
    strategy: Strategy,
) -> Result<Vec<Conflict>, DbError> {
    let tx = txs[0];
    // The first side's own row and first operation on the key come along.
    let sql = format!(
        "select concat_ws(',', {keys}), s.belt_changed_at::text, p.belt_changed_at::text, {wins}, \
                array[{keys}], {side} \
         from ({summary}) s join {peer} p on {join} order by {order}",
        keys = each_key(table, |c| format!("s.{c}::text")),
        order = each_key(table, |c| format!("s.{c}")),
        wins = strategy.peer_wins_sql(true),
        summary = summary_sql(table, range),
        peer = table.temp_table('p'),
        join = table.key_join("p", "s"),
        side = row_and_first_op(table, "s"),
    );
    let rows = tx.query_typed(&sql, &[]).await.map_err(|e| {
        DbError::query(
            dbs[0],
            format!("read conflicts of {}", table.table.display_name()),
            e,
        )
    })?;
    let decided = !matches!(strategy, Strategy::Skip | Strategy::Abort);
    let keys: Vec<Vec<String>> = rows.iter().map(|r| r.get(4)).collect();
    let second = second_side(txs[1], dbs[1], table, &keys).await?;
    Ok(rows
        .iter()
        .zip(keys)
        .map(|(r, key)| {
            let second_wins: bool = r.get(3);
            let first_row: Option<String> = r.get(5);
            let first_op: Option<String> = r.get(6);
            let (second_row, second_op) = second
                .iter()
                .find(|(k, ..)| *k == key)
                .map(|(_, row, op)| (row.clone(), op.clone()))
                .unwrap_or_default();
            let op = |o: &Option<String>| o.as_deref().and_then(|o| o.chars().next());
            let kind = ConflictKind::of(
                [op(&first_op), op(&second_op)],
                [first_row.is_some(), second_row.is_some()],
            );
            let loser_row = match (decided, second_wins) {
                (false, _) => None,
                (true, true) => first_row,
                (true, false) => second_row,
            };
            Conflict {
                table: table.table.display_name(),
                key: r.get(0),
                kind,
                first_changed_at: r.get(1),
                second_changed_at: r.get(2),
                winner: decided.then(|| dbs[usize::from(second_wins)].to_string()),
                loser_row,
            }
        })
        .collect())
}

/// Two columns for the key in alias `k`: the row as JSON (NULL when there is none)
/// and the first captured operation on the key still pending in the delta table.
fn row_and_first_op(table: &TablePlan, k: &str) -> String {
    format!(
        "(select row_to_json(t)::text from {t} t where {own}), \
         (select d.belt_op::text from {delta} d where {in_delta} order by d.belt_changed_at, d.belt_txid limit 1)",
        t = table.table.qualified(),
        own = table.key_join("t", k),
        delta = table.delta_sql(),
        in_delta = table.key_join("d", k),
    )
}

/// The second side's row (JSON) and first pending operation for each of `keys`,
/// read before the first side's rows overwrite them.
async fn second_side(
    tx: &Transaction<'_>,
    db: &str,
    table: &TablePlan,
    keys: &[Vec<String>],
) -> Result<Vec<(Vec<String>, Option<String>, Option<String>)>, DbError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<String> = keys
        .iter()
        .map(|k| format!("({})", table.key_values(k)))
        .collect();
    let sql = format!(
        "select array[{text}], {side} from (values {wanted}) w({cols})",
        text = each_key(table, |c| format!("w.{c}::text")),
        side = row_and_first_op(table, "w"),
        wanted = wanted.join(", "),
        cols = table.key_list(),
    );
    Ok(tx
        .query_typed(&sql, &[])
        .await
        .map_err(|e| {
            DbError::query(
                db,
                format!(
                    "read the other side of the conflicts of {}",
                    table.table.display_name()
                ),
                e,
            )
        })?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

pub(super) fn each_key(table: &TablePlan, f: impl Fn(&str) -> String) -> String {
    table
        .key
        .iter()
        .map(|k| f(&quote::ident(k)))
        .collect::<Vec<_>>()
        .join(", ")
}
