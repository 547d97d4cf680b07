//! The sync's row in `belt.syncs` on each of its databases: what must outlive the
//! daemon's own disk.
//!
//! - The mark that its initial copy finished, so that a daemon which lost its catalog
//!   (a pod on an empty volume) resumes the sync from the deltas on the databases
//!   instead of copying it again. It is the same random token on both databases,
//!   written after the copy and its indexes are done; a set-up finds the copy done
//!   only when both hold the same token (a database swapped for another, or a copy
//!   cut short, has none or another one). A set-up that copies clears it first.
//! - The fence: the owner and epoch that make one daemon at a time write for the
//!   sync (`daemon::session::Session::open` takes the lock and the epoch).

use tokio_postgres::Client;

use crate::pg::DbError;

/// The SQLSTATE `belt.fence` raises in a daemon that lost the sync to another: the
/// whole round fails (never one table), and the retry finds the sync held.
pub const FENCED: &str = "BLT01";

/// Removes the copy mark of `sync` from one database (a copy is about to start).
pub async fn clear_copied(client: &Client, db: &str, sync: &str) -> Result<(), DbError> {
    client
        .execute(
            "update belt.syncs set copied_token = null, copied_at = null where sync = $1",
            &[&sync],
        )
        .await
        .map_err(|e| DbError::query(db, "clear the sync's copy mark in belt.syncs", e))?;
    Ok(())
}

/// Marks `sync`'s copy finished on both databases, with one new token.
pub async fn mark_copied(sides: [(&Client, &str); 2], sync: &str) -> Result<(), DbError> {
    let (client, db) = sides[0];
    let token: String = client
        .query_one("select md5(random()::text || clock_timestamp()::text)", &[])
        .await
        .map_err(|e| DbError::query(db, "make a copy token", e))?
        .get(0);
    for (client, db) in sides {
        client
            .execute(
                "insert into belt.syncs (sync, copied_token, copied_at) values ($1, $2, now()) \
                 on conflict (sync) do update set copied_token = excluded.copied_token, \
                 copied_at = excluded.copied_at",
                &[&sync, &token],
            )
            .await
            .map_err(|e| DbError::query(db, "mark the sync's copy done in belt.syncs", e))?;
    }
    Ok(())
}

/// When `sync`'s copy finished, if both databases carry the same copy mark.
pub async fn copied_at(sides: [(&Client, &str); 2], sync: &str) -> Result<Option<String>, DbError> {
    let mut marks = Vec::new();
    for (client, db) in sides {
        let row = client
            .query_opt(
                "select copied_token, copied_at::text from belt.syncs \
                 where sync = $1 and copied_token is not null",
                &[&sync],
            )
            .await
            .map_err(|e| DbError::query(db, "read the sync's copy mark in belt.syncs", e))?;
        marks.push(row.map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))));
    }
    Ok(match (&marks[0], &marks[1]) {
        (Some((a, at)), Some((b, _))) if a == b => Some(at.clone()),
        _ => None,
    })
}

/// The advisory lock a daemon holds, on the sync's first source and for as long
/// as its session there lives, while it runs the sync: `true` when taken (or held
/// already by this session).
pub async fn try_lock(client: &Client, db: &str, sync: &str) -> Result<bool, DbError> {
    Ok(client
        .query_one(
            "select pg_try_advisory_lock(hashtext('belt.sync'), hashtext($1))",
            &[&sync],
        )
        .await
        .map_err(|e| DbError::query(db, "take the sync's advisory lock", e))?
        .get(0))
}

/// Who runs `sync` according to `belt.syncs` on this database, and since when.
pub async fn owner(client: &Client, db: &str, sync: &str) -> Result<Option<String>, DbError> {
    let row = client
        .query_opt(
            "select owner || ' since ' || owned_at::text from belt.syncs \
             where to_regclass('belt.syncs') is not null and sync = $1 and owner is not null",
            &[&sync],
        )
        .await
        .map_err(|e| DbError::query(db, "read the sync's owner in belt.syncs", e))?;
    Ok(row.map(|r| r.get(0)))
}

/// Makes this daemon (`owner`) the sync's owner on one database: a new epoch, which
/// every earlier owner's next write transaction there finds stale. Waits for a
/// transaction of the earlier owner that is still writing.
pub async fn take_over(client: &Client, db: &str, sync: &str, owner: &str) -> Result<i64, DbError> {
    Ok(client
        .query_one(
            "insert into belt.syncs as s (sync, epoch, owner, owned_at) values ($1, 1, $2, now()) \
             on conflict (sync) do update set epoch = s.epoch + 1, owner = excluded.owner, \
             owned_at = excluded.owned_at returning epoch",
            &[&sync, &owner],
        )
        .await
        .map_err(|e| DbError::query(db, "take the sync over in belt.syncs", e))?
        .get(0))
}

/// The statement that starts every transaction writing for `sync` under `epoch`.
pub fn fence_sql(sync: &str, epoch: i64) -> String {
    format!("select belt.fence({}, {epoch})", crate::pg::quote::literal(sync))
}
