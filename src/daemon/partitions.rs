//! Partitions come and go during a sync (a maintenance job creates next month's,
//! detaches or drops last year's, a bulk load attaches a filled table), and none of
//! that fires a trigger. Every few seconds each source compares the partitions of
//! its captured partitioned tables with the list it kept (`belt.partition_changes`):
//! a new one gets the truncate trigger and has the keys it holds queued; then the
//! other database is made to match, so that its rows have somewhere to go and
//! nothing is deleted:
//!
//! - created or attached here, missing there: created there as a partition of the
//!   same parent with the same bound (so it gets the parent's columns, indexes,
//!   constraints and triggers), the same owner and the same grants;
//! - attached here, a plain table of that name there: attached there too;
//! - detached or dropped here, still attached there: detached there. Its rows stay
//!   in a table of their own, never deleted; `verify` and the cutover gate name that
//!   table until it is replicated (`--tables all` picks it up) or excluded.

use tokio_postgres::Transaction;
use tracing::{info, warn};

use super::session::Session;
use crate::engine::Side;
use crate::pg::DbError;

/// One change a source reported.
struct Change {
    root: String,
    part: String,
    /// The partition's direct parent on the source (attached only).
    parent: Option<String>,
    attached: bool,
    bound: Option<String>,
    /// `CREATE TABLE … PARTITION OF` and the statements that give it the source's
    /// owner and grants (attached only).
    create: Vec<String>,
}

/// What the other database holds under a partition's name.
enum There {
    Missing,
    /// A table of its own.
    Table,
    /// A partition of the same table, under this direct parent.
    PartitionOf(String),
    /// A partition of some other table.
    Elsewhere,
}

/// Follows the partition changes of every source of the sync; returns how many.
///
/// A source's changes are read (and recorded in its `belt.partitions`) in a
/// transaction committed only once the other side matches: a change that could not
/// be followed (a lock the application held) is reported again next time.
/// Whether a source (`side`) has partitions of `plans`' tables created, attached or
/// detached since belt last followed them: asked in a transaction that is rolled back,
/// so that the round that follows them still sees them.
pub async fn changed(side: &mut Side, plans: &[crate::engine::TablePlan]) -> Result<bool, DbError> {
    let roots: Vec<String> = plans.iter().map(|p| p.table.qualified()).collect();
    let db = side.db.clone();
    let partitioned: bool = side
        .client
        .query_one(
            "select exists (select 1 from belt.partitions where root = any($1))",
            &[&roots],
        )
        .await
        .map_err(|e| DbError::query(&db, "look for partitioned tables", e))?
        .get(0);
    if !partitioned {
        return Ok(false);
    }
    let tx = side
        .client
        .transaction()
        .await
        .map_err(|e| DbError::query(&db, "begin looking for partition changes", e))?;
    let found = !changes(&tx, &db, &roots).await?.is_empty();
    tx.rollback()
        .await
        .map_err(|e| DbError::query(&db, "end looking for partition changes", e))?;
    Ok(found)
}

pub async fn follow(sync: &str, session: &mut Session) -> Result<usize, DbError> {
    let roots: Vec<String> = session.plans.iter().map(|p| p.table.qualified()).collect();
    let mut followed = 0;
    // A partition created on the second side is recorded there in the next pass.
    for _ in 0..2 {
        let mut changed = 0;
        for i in 0..2 {
            let [a, b] = &mut session.sides;
            let (from, to) = if i == 0 { (a, b) } else { (b, a) };
            if !from.source {
                continue;
            }
            let db = from.db.clone();
            let tx = from
                .client
                .transaction()
                .await
                .map_err(|e| DbError::query(&db, "begin following partitions", e))?;
            for c in changes(&tx, &db, &roots).await? {
                changed += 1;
                apply(sync, to, &c).await?;
            }
            tx.commit()
                .await
                .map_err(|e| DbError::query(&db, "record followed partitions", e))?;
        }
        followed += changed;
        if changed == 0 {
            break;
        }
    }
    Ok(followed)
}

async fn changes(tx: &Transaction<'_>, db: &str, roots: &[String]) -> Result<Vec<Change>, DbError> {
    let ctx = "look for partitions created, attached or detached";
    let rows = tx
        .query(
            "select root, part, parent, change = 'attached', bound from belt.partition_changes($1)",
            &[&roots],
        )
        .await
        .map_err(|e| DbError::query(db, ctx, e))?;
    let mut changes = Vec::with_capacity(rows.len());
    for r in rows {
        let mut c = Change {
            root: r.get(0),
            part: r.get(1),
            parent: r.get(2),
            attached: r.get(3),
            bound: r.get(4),
            create: Vec::new(),
        };
        if let (Some(parent), Some(bound)) = (&c.parent, &c.bound) {
            c.create = tx
                .query_one(CREATE_SQL, &[&c.part, parent, bound])
                .await
                .map_err(|e| DbError::query(db, ctx, e))?
                .get(0);
        }
        changes.push(c);
    }
    Ok(changes)
}

/// The statements that make partition $1 of $2 with bound $3 as it is here.
const CREATE_SQL: &str = "
select array[format('create table %s partition of %s %s', $1::text, $2::text, $3::text)
             || coalesce(' partition by ' || pg_get_partkeydef(c.oid), ''),
             format('alter table %s owner to %I', $1::text, pg_get_userbyid(c.relowner))]
       || array(select format('grant %s on %s to %s', a.privilege_type, $1::text,
                       case when a.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end)
                  from aclexplode(c.relacl) a
                 where a.grantee <> c.relowner)
  from pg_class c where c.oid = to_regclass($1::text)";

async fn there(to: &Side, root: &str, part: &str) -> Result<There, DbError> {
    let row = to
        .client
        .query_opt(
            "select c.relispartition and pg_partition_root(c.oid) = to_regclass($2), \
                    (select i.inhparent::regclass::text from pg_inherits i where i.inhrelid = c.oid) \
               from pg_class c where c.oid = to_regclass($1)",
            &[&part, &root],
        )
        .await
        .map_err(|e| DbError::query(&to.db, format!("look up {part}"), e))?;
    Ok(match row {
        None => There::Missing,
        Some(r) if r.get::<_, Option<String>>(1).is_none() => There::Table,
        Some(r) if r.get::<_, bool>(0) => There::PartitionOf(r.get(1)),
        Some(_) => There::Elsewhere,
    })
}

async fn apply(sync: &str, to: &mut Side, c: &Change) -> Result<(), DbError> {
    let (root, part, db) = (&c.root, &c.part, to.db.clone());
    match (c.attached, there(to, root, part).await?) {
        (true, There::Missing) if !c.create.is_empty() => {
            ddl(to, &c.create.join("; ")).await?;
            info!(sync, partition = %part, table = %root, %db, "partition created to match the other side");
        }
        (true, There::Table) => {
            let (Some(parent), Some(bound)) = (&c.parent, &c.bound) else {
                return Ok(());
            };
            ddl(
                to,
                &format!("alter table {parent} attach partition {part} {bound}"),
            )
            .await?;
            info!(sync, partition = %part, table = %root, %db, "partition attached to match the other side");
        }
        (false, There::PartitionOf(parent)) => {
            ddl(to, &format!("alter table {parent} detach partition {part}")).await?;
            warn!(sync, partition = %part, table = %root, %db,
                "partition detached to match the other side; its rows stay in that table");
        }
        (true, There::Elsewhere) => {
            warn!(sync, partition = %part, table = %root, %db,
                "partition attached here belongs to another table there; left as it is");
        }
        _ => {}
    }
    Ok(())
}

/// Runs one partition statement on `to`, giving up on a lock the application holds
/// rather than queueing it behind us (the next pass tries again).
async fn ddl(to: &mut Side, sql: &str) -> Result<(), DbError> {
    let ctx = || sql.to_string();
    let tx = to
        .client
        .transaction()
        .await
        .map_err(|e| DbError::query(&to.db, ctx(), e))?;
    tx.batch_execute(&format!("set local lock_timeout = '5s'; {sql}"))
        .await
        .map_err(|e| DbError::query(&to.db, ctx(), e))?;
    tx.commit().await.map_err(|e| DbError::query(&to.db, ctx(), e))
}
