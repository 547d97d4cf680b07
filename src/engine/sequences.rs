//! Rule 7 of DESIGN.md, one-way part: a target sequence never falls behind its source.
//! (With two sources each side keeps its own sequences; interleaving comes later.)
//!
//! Each round reads the source's sequences and moves a target sequence forward to the
//! source's value when it is behind; it never moves one backwards. After a cutover
//! the new primary therefore hands out no id the old one already used.

use super::Side;
use crate::pg::introspect::TableName;
use crate::pg::{quote, DbError};

/// Moves each target sequence up to its source value; returns how many moved.
pub async fn carry(from: &Side, to: &Side, seqs: &[TableName]) -> Result<u64, DbError> {
    let (src, dst) = (&from.client, &to.client);
    let mut moved = 0;
    for seq in seqs {
        let name = quote::qualified(&seq.schema, &seq.name);
        let read = format!("select last_value, is_called from {name}");
        let ctx = || format!("read sequence {}.{}", seq.schema, seq.name);
        let s = src
            .query_one(&read, &[])
            .await
            .map_err(|e| DbError::query(&from.db, ctx(), e))?;
        let (src_value, src_called): (i64, bool) = (s.get(0), s.get(1));
        if !src_called {
            continue;
        }
        let d = dst
            .query_one(&read, &[])
            .await
            .map_err(|e| DbError::query(&to.db, ctx(), e))?;
        let (dst_value, dst_called): (i64, bool) = (d.get(0), d.get(1));
        if dst_called && dst_value >= src_value {
            continue;
        }
        dst.execute(
            "select setval($1::text::regclass, $2, true)",
            &[&name, &src_value],
        )
        .await
        .map_err(|e| DbError::query(&to.db, format!("advance sequence {}.{}", seq.schema, seq.name), e))?;
        moved += 1;
    }
    Ok(moved)
}
