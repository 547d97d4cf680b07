//! The sync's row in `belt.syncs` on each of its databases: the mark that its initial
//! copy finished, so that a daemon which lost its catalog (a pod on an empty volume)
//! resumes the sync from the deltas on the databases instead of copying it again.
//!
//! The mark is the same random token on both databases, written after the copy and
//! its indexes are done. A setup finds the copy done only when both databases hold
//! the same token: a database swapped for another, or a copy cut short, has none or
//! another one. A setup that copies clears the mark first.

use tokio_postgres::Client;

use crate::pg::DbError;

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
