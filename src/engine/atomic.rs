//! Rule 5 of DESIGN.md: a round is atomic per side. In steady state the whole round —
//! the truncates and the rows of every table of the sync — is one REPEATABLE READ
//! transaction per side, read from one snapshot of each source, so the receiving
//! side goes from one consistent state of the source to a later one at one commit:
//! a reader never sees an order without its lines.
//!
//! The snapshot of the round *is* the source transaction's own snapshot: the batch
//! (every delta it sees) and the rows read are the same instant, so no transaction
//! that committed later is half in. Only a backlog over the budget (`chunk_keys`
//! keys, or `chunk_bytes` by the tables' row estimates) is left to the round in
//! chunks, which is bounded but not atomic (the status then says
//! `consistent: false`). The caller falls back to chunks too when this round races
//! the application's writes to its rows (chunks race in smaller windows and defer a
//! key that keeps losing), and when a table fails on its own.
//!
//! The tables are applied in one pipelined pass per step ([`super::all_tables`]),
//! under a savepoint. A row the receiver refuses (SQLSTATE classes 22 and 23), or a
//! key its application holds, fails the pass; the round rolls back to the savepoint
//! and applies table by table. It does not break the round up: the table's changes
//! are applied again in halving ranges of the sending side's
//! changed keys, each under a savepoint, until the one key is found; it is parked
//! (its deltas deleted in the round's own transactions) and the rest of the round
//! commits as one. A reader then sees the round whole, without that row's change.
//!
//! Round trips are what a round costs at low rates: each side's snapshot, key counts
//! and truncates go in one pipelined exchange, both sides at once, the pass has no
//! round trip per table, and the purges after the commits are one statement list per
//! side.

use futures_util::future::try_join_all;
use tokio_postgres::{SimpleQueryMessage, Transaction};

use super::apply::{
    apply_range, begin, create_temp_tables, each_key, purge_snapshot_sql, purge_sql, temp_tables_sql,
    ChunkResult,
};
use super::batch::{batch_filter, current_snapshot};
use super::park::{self, Parked};
use super::plan::TablePlan;
use super::round::is_race;
use super::snapshot::Snapshot;
use super::{all_tables, truncate, EngineError, Side, Strategy};
use crate::pg::prepared::Prepared;
use crate::pg::DbError;

/// What an atomic round did.
#[derive(Debug, Default)]
pub struct AtomicRound {
    /// Each source's snapshot: its batch, and the position to store.
    pub snapshots: [Option<Snapshot>; 2],
    /// The tables' results, summed.
    pub applied: ChunkResult,
    /// Tables (or partitions) truncated.
    pub truncates: u64,
    /// Keys whose rows the receiver refused, set aside inside the round.
    pub parked: Vec<Parked>,
    /// Keys left for the next round: the receiver's application wrote them after the
    /// round's snapshot.
    pub deferred: u64,
}

/// The most one atomic round may carry.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub keys: i64,
    pub bytes: i64,
}

/// One source's view at the start of the round.
struct Start {
    snapshot: Snapshot,
    /// Changed keys per table, counted up to the budget.
    counts: Vec<i64>,
    truncates: Vec<truncate::Truncate>,
}

/// Runs the round as one transaction per side. `Ok(None)` when the backlog is over
/// `budget`: nothing was written, and the caller runs the round in chunks.
pub async fn run(
    sides: &mut [Side; 2],
    tables: &[TablePlan],
    positions: &[Option<Snapshot>; 2],
    budget: Budget,
    strategy: Strategy,
) -> Result<Option<AtomicRound>, EngineError> {
    let [a, b] = sides;
    let dbs = [a.db.as_str(), b.db.as_str()];
    let sources = [a.source, b.source];
    let (ta, tb) = tokio::try_join!(
        begin(&mut a.client, dbs[0], &a.fence),
        begin(&mut b.client, dbs[1], &b.fence)
    )?;
    let txs = [&ta, &tb];
    let prepared = [&a.prepared, &b.prepared];
    let cap = budget.keys + 1;
    let (start_a, start_b) = tokio::try_join!(
        start(
            txs[0],
            dbs[0],
            &a.prepared,
            sources[0],
            positions[0].as_ref(),
            tables,
            cap
        ),
        start(
            txs[1],
            dbs[1],
            &b.prepared,
            sources[1],
            positions[1].as_ref(),
            tables,
            cap
        ),
    )?;
    let starts = [start_a, start_b];
    let mut changed = vec![[0i64; 2]; tables.len()];
    let (mut keys, mut bytes) = (0i64, 0i64);
    for (i, s) in starts.iter().enumerate() {
        for (t, n) in s.iter().flat_map(|s| s.counts.iter().enumerate()) {
            changed[t][i] = *n;
            keys += n;
            bytes = bytes.saturating_add(n.saturating_mul(tables[t].row_bytes));
        }
    }
    if keys > budget.keys || bytes > budget.bytes {
        return Ok(None); // the transactions roll back on drop
    }
    let mut round = AtomicRound::default();
    for (i, s) in starts.iter().enumerate() {
        let Some(s) = s else { continue };
        if !s.truncates.is_empty() {
            truncate::apply(txs[1 - i], dbs[1 - i], sources[1 - i], tables, &s.truncates).await?;
            round.truncates += s.truncates.len() as u64;
        }
    }
    // Fewest changed keys first: small tables are where rows are hot (a branch, a
    // counter), and the sooner after the snapshot they are written, the less often
    // the round loses a race with the application to them.
    let mut order: Vec<usize> = (0..tables.len()).filter(|&t| changed[t] != [0, 0]).collect();
    order.sort_by_key(|&t| changed[t][0] + changed[t][1]);
    let mut deferred = vec![Vec::new(); tables.len()];
    // The temp tables of the changed tables that a session does not have from an
    // earlier round yet, in one pipelined exchange per side.
    let missing = [&a.temps, &b.temps].map(|made| {
        order
            .iter()
            .map(|&t| (t, temp_tables_sql(&tables[t])))
            .filter(|(_, sql)| !made.contains(sql))
            .collect::<Vec<_>>()
    });
    let make = |i: usize| {
        try_join_all(
            missing[i]
                .iter()
                .map(move |(t, sql)| create_temp_tables(txs[i], dbs[i], &tables[*t], sql)),
        )
    };
    tokio::try_join!(make(0), make(1))?;
    // Every table in one pipelined pass; only when a row is refused or races the
    // application, back to before it and table by table, where that key is found.
    let changed_tables: Vec<&TablePlan> = order.iter().map(|&t| &tables[t]).collect();
    let counts: Vec<[i64; 2]> = order.iter().map(|&t| changed[t]).collect();
    let (set, pass) = tokio::join!(
        both(txs, dbs, "savepoint belt_round"),
        all_tables::apply_all(txs, dbs, prepared, &changed_tables, &counts, sources, strategy),
    );
    set?;
    match pass {
        Ok(r) => round.applied.add(r),
        Err(e) if park::is_row_error(&e) || is_race(&e) => {
            tracing::debug!(error = %crate::pg::error::render(&e), "round applied table by table");
            both(txs, dbs, "rollback to savepoint belt_round").await?;
            let mut apply = Guarded {
                txs,
                dbs,
                prepared,
                sources,
                strategy,
                savepoint: false,
                last: None,
            };
            for t in order {
                let r = apply_table(&mut apply, &tables[t], &mut round, &mut deferred[t]).await?;
                round.applied.add(r);
                round.deferred += deferred[t].len() as u64;
            }
        }
        Err(e) => return Err(e),
    }
    tokio::try_join!(commit(ta, dbs[0]), commit(tb, dbs[1]))?;
    // Committed: the sessions keep the temp tables made in this round.
    let [made_a, made_b] = missing.map(|m| m.into_iter().map(|(_, sql)| sql));
    a.temps.extend(made_a);
    b.temps.extend(made_b);
    // Only after both commits: a side whose commit failed gets every change again.
    let purges = [0, 1].map(|i| {
        let Some(s) = starts[i].as_ref() else {
            return Purges::default();
        };
        let mut p = Purges {
            snapshot: s.snapshot.to_string(),
            ..Purges::default()
        };
        let batch = batch_filter(&s.snapshot);
        for t in (0..tables.len()).filter(|&t| changed[t][i] > 0) {
            let delta = tables[t].delta_sql();
            if deferred[t].is_empty() {
                // The round's snapshot is its batch: every delta row it saw goes.
                p.prepared.push((delta, purge_snapshot_sql(&tables[t])));
            } else {
                let range = format!("true{}", not_deferred(&tables[t], &deferred[t]));
                let sql = purge_sql(&tables[t], &range, &p.snapshot, &batch);
                p.text.push((Some(delta), sql));
            }
        }
        if !s.truncates.is_empty() {
            p.text.push((None, truncate::purge_sql(tables, &batch)));
        }
        p
    });
    tokio::try_join!(purge(a, &purges[0]), purge(b, &purges[1]))?;
    round.snapshots = starts.map(|s| s.map(|s| s.snapshot));
    Ok(Some(round))
}

/// A source's snapshot (its first statement, so the transaction's own), its changed
/// keys per table and its truncates, in one pipelined exchange; `None` when the
/// side is not a source.
async fn start(
    tx: &Transaction<'_>,
    db: &str,
    prepared: &Prepared,
    source: bool,
    position: Option<&Snapshot>,
    tables: &[TablePlan],
    cap: i64,
) -> Result<Option<Start>, EngineError> {
    if !source {
        return Ok(None);
    }
    // Everything the transaction sees is the batch: the snapshot is its own.
    let (snapshot, counts, truncates) = tokio::try_join!(
        current_snapshot(tx, db, position),
        async { Ok(count_keys(tx, db, prepared, tables, cap).await?) },
        async { Ok(truncate::read(tx, db, Some(prepared), tables, "true").await?) },
    )?;
    Ok(Some(Start {
        snapshot,
        counts,
        truncates,
    }))
}

/// At most this many keys of a round wait for the next round because the
/// application wrote them on the receiver after the round's snapshot. Past that the
/// application writes the round's rows faster than a round runs (the same hot rows
/// on both sides), and the round goes in chunks, which race in smaller windows.
const MAX_DEFERRED: u64 = 4;

/// Applies `table`'s changes in the round. A row the receiver refuses is found,
/// parked, and the rest applied; a key the receiver's application wrote after the
/// round's snapshot is found and left for the next round (its deltas are kept, and
/// `deferred` lists it for the purge). All within the round's transactions.
async fn apply_table(
    apply: &mut Guarded<'_, '_>,
    table: &TablePlan,
    round: &mut AtomicRound,
    deferred: &mut Vec<Vec<String>>,
) -> Result<ChunkResult, EngineError> {
    let (txs, dbs, sources) = (apply.txs, apply.dbs, apply.sources);
    let first = apply.range(table, "true".into()).await?;
    let error = match first {
        Ok(r) => return Ok(r),
        Err(e) => e,
    };
    // Ranges (keys[lo-1], keys[hi-1]] of the sending side's changed keys, then the
    // range above its last key; `true` once a range's key was set aside.
    let from = usize::from(park::failed_db(dbs, &error) == dbs[0]);
    if !sources[from] {
        return Err(error);
    }
    let keys = changed_keys(txs[from], dbs[from], table).await?;
    let mut result = ChunkResult::default();
    let mut todo = vec![(0, keys.len(), false)];
    while let Some((lo, hi, retried)) = todo.pop() {
        if lo >= hi {
            continue;
        }
        let below = (lo > 0).then(|| keys[lo - 1].as_slice());
        let range = table.key_range(below, Some(&keys[hi - 1]));
        let range = format!("{range}{}", not_deferred(table, deferred));
        match apply.range(table, range).await? {
            Ok(r) => result.add(r),
            Err(e) if hi - lo == 1 && !retried && park::is_row_error(&e) => {
                let key = &keys[lo];
                let sql = park::delete_sql(table, key);
                for i in (0..2).filter(|&i| sources[i]) {
                    txs[i].batch_execute(&sql).await.map_err(|e| {
                        DbError::query(dbs[i], format!("park a key of {}", table.table.display_name()), e)
                    })?;
                }
                tracing::warn!(table = %table.table.display_name(), key = ?key, "row parked");
                round.parked.push(park::describe(dbs, table, key, &e));
                todo.push((lo, hi, true));
            }
            Err(e) if hi - lo == 1 && !retried && round.deferred + (deferred.len() as u64) < MAX_DEFERRED => {
                let key = keys[lo].clone();
                tracing::info!(table = %table.table.display_name(), key = ?key, error = %crate::pg::error::render(&e),
                               "key written by the application during the round: left for the next round");
                deferred.push(key);
                todo.push((lo, hi, true));
            }
            Err(e) if hi - lo == 1 => return Err(e),
            Err(_) => {
                let mid = (lo + hi) / 2;
                todo.push((mid, hi, false));
                todo.push((lo, mid, false));
            }
        }
    }
    let above = match keys.last() {
        Some(last) => format!("{}{}", table.key_above(last), not_deferred(table, deferred)),
        None => return Err(error),
    };
    result.add(apply.range(table, above).await??);
    Ok(result)
}

/// ` and not (k) = (K)` for each deferred key: a condition on the deltas' keys.
fn not_deferred(table: &TablePlan, deferred: &[Vec<String>]) -> String {
    deferred
        .iter()
        .map(|k| format!(" and ({}) <> ({})", table.key_list(), table.key_values(k)))
        .collect()
}

/// Applies ranges of tables within the round's transactions, each under a
/// savepoint, so that a refused row or a lost race undoes only that range.
struct Guarded<'a, 't> {
    txs: [&'a Transaction<'t>; 2],
    dbs: [&'a str; 2],
    prepared: [&'a Prepared; 2],
    sources: [bool; 2],
    strategy: Strategy,
    /// A savepoint is set (and maybe rolled back to): the next one releases it.
    savepoint: bool,
    /// The table of the last range applied: a range of the same table empties its
    /// temp tables first (they keep their rows until the commit).
    last: Option<String>,
}

impl Guarded<'_, '_> {
    /// [`apply_range`] under a savepoint on both sides: `Ok(Err(e))` when a row was
    /// refused or lost a race with the application's write to it (rolled back to the
    /// savepoint, the round goes on), `Err` for any other failure. The savepoint
    /// goes out pipelined with the apply's first statement, and is released only
    /// when the next is set: no round trips of its own on the way that succeeds.
    async fn range(
        &mut self,
        table: &TablePlan,
        range: String,
    ) -> Result<Result<ChunkResult, EngineError>, EngineError> {
        let (txs, dbs) = (self.txs, self.dbs);
        let mut set = if self.savepoint {
            "release savepoint belt_rows; savepoint belt_rows".to_string()
        } else {
            "savepoint belt_rows".to_string()
        };
        if self.last.as_deref() == Some(table.delta.as_str()) {
            set = format!(
                "{set}; delete from {}; delete from {}",
                table.temp_table('r'),
                table.temp_table('p')
            );
        }
        self.savepoint = true;
        self.last = Some(table.delta.clone());
        // Polled first, so sent first on each connection.
        let applied = tokio::try_join!(
            async { Ok(both(txs, dbs, &set).await?) },
            apply_range(
                txs,
                dbs,
                self.prepared,
                table,
                &range,
                self.sources,
                self.strategy
            )
        );
        match applied {
            Ok((_, r)) => Ok(Ok(r)),
            Err(e) if park::is_row_error(&e) || is_race(&e) => {
                both(txs, dbs, "rollback to savepoint belt_rows").await?;
                Ok(Err(e))
            }
            Err(e) => Err(e),
        }
    }
}

async fn both(txs: [&Transaction<'_>; 2], dbs: [&str; 2], sql: &str) -> Result<(), DbError> {
    tokio::try_join!(
        async {
            txs[0]
                .batch_execute(sql)
                .await
                .map_err(|e| DbError::query(dbs[0], sql.to_string(), e))
        },
        async {
            txs[1]
                .batch_execute(sql)
                .await
                .map_err(|e| DbError::query(dbs[1], sql.to_string(), e))
        },
    )?;
    Ok(())
}

/// The distinct keys of `table`'s delta in `tx`'s snapshot, in key order, as text.
async fn changed_keys(
    tx: &Transaction<'_>,
    db: &str,
    table: &TablePlan,
) -> Result<Vec<Vec<String>>, DbError> {
    let sql = format!(
        "select {text} from (select distinct {k} from {d}) c order by {k}",
        text = each_key(table, |c| format!("{c}::text")),
        k = table.key_list(),
        d = table.delta_sql()
    );
    Ok(tx
        .query_typed(&sql, &[])
        .await
        .map_err(|e| {
            DbError::query(
                db,
                format!("read changed keys of {}", table.table.display_name()),
                e,
            )
        })?
        .iter()
        .map(|r| (0..table.key.len()).map(|i| r.get(i)).collect())
        .collect())
}

async fn commit(tx: Transaction<'_>, db: &str) -> Result<(), DbError> {
    tx.commit()
        .await
        .map_err(|e| DbError::query(db, "commit round", e))
}

/// A round's purges on one side, each with the delta table it deletes from.
#[derive(Default)]
struct Purges {
    /// The round's snapshot there, the parameter of the prepared ones.
    snapshot: String,
    /// The same text every round, prepared once per connection.
    prepared: Vec<(String, String)>,
    /// Those that name keys (deferred ones) or truncates: run as they are.
    text: Vec<(Option<String>, String)>,
}

/// Runs a round's purges on one side, pipelined, and vacuums the delta tables that
/// are due for it.
async fn purge(side: &mut Side, purges: &Purges) -> Result<(), DbError> {
    if purges.prepared.is_empty() && purges.text.is_empty() {
        return Ok(());
    }
    let error = |e| DbError::query(&side.db, "purge the round's applied deltas", e);
    let (client, prepared) = (&side.client, &side.prepared);
    let statements = try_join_all(purges.prepared.iter().map(|(_, sql)| prepared.get(client, sql)))
        .await
        .map_err(error)?;
    let text: Vec<&str> = purges.text.iter().map(|(_, s)| s.as_str()).collect();
    let snapshot: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&purges.snapshot];
    // Each is sent on its first poll, and the join polls in order.
    let (deleted, done) = tokio::join!(
        try_join_all(statements.iter().map(|s| client.execute(s, &snapshot))),
        async {
            match text.is_empty() {
                true => Ok(Vec::new()),
                false => client.simple_query(&text.join("; ")).await,
            }
        }
    );
    let (deleted, done) = (deleted.map_err(error)?, done.map_err(error)?);
    let counted = done.iter().filter_map(|m| match m {
        SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    });
    for ((delta, _), n) in purges.prepared.iter().zip(deleted) {
        side.purged.add(delta, n);
    }
    for ((delta, _), n) in purges.text.iter().zip(counted) {
        if let Some(delta) = delta {
            side.purged.add(delta, n);
        }
    }
    side.purged.vacuum_due(&side.client, &side.db).await;
    Ok(())
}

/// How many distinct keys each table's delta holds in `tx`'s snapshot, counting no
/// further than `cap` each: one statement for the whole sync.
async fn count_keys(
    tx: &Transaction<'_>,
    db: &str,
    prepared: &Prepared,
    tables: &[TablePlan],
    cap: i64,
) -> Result<Vec<i64>, DbError> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let counts: Vec<String> = tables
        .iter()
        .map(|t| {
            format!(
                "(select count(*) from (select distinct {k} from {d} limit {cap}) c)",
                k = t.key_list(),
                d = t.delta_sql()
            )
        })
        .collect();
    let error = |e| DbError::query(db, "count the round's changed keys", e);
    let sql = format!("select array[{}]::int8[]", counts.join(", "));
    let statement = prepared.get(tx.client(), &sql).await.map_err(error)?;
    Ok(tx.query_one(&statement, &[]).await.map_err(error)?.get(0))
}
