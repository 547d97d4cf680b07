//! What a round needs to know about one table: the table by its key
//! ([`KeyedTable`]), its delta table, and the apply SQL built from both.

use crate::pg::introspect::TableInfo;
use crate::pg::{quote, KeyedTable};

/// One captured table, ready for rounds: the table by its key, plus the delta side.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub keyed: KeyedTable,
    /// Delta table in schema `belt` on the source.
    pub delta: String,
    /// Estimated bytes of one row (0: unknown), so that a chunk of wide rows is cut
    /// by `chunk_bytes` as well as by `chunk_keys`.
    pub row_bytes: i64,
    /// At most this many keys per chunk after a chunk of this table stalled.
    pub stall_cap: Option<i64>,
}

/// A plan is its keyed table plus the delta side: the key-range SQL is the keyed
/// table's, read through the plan.
impl std::ops::Deref for TablePlan {
    type Target = KeyedTable;

    fn deref(&self) -> &KeyedTable {
        &self.keyed
    }
}

impl TablePlan {
    /// Builds the plan of a table whose changes land in the delta table `delta`.
    pub fn new(table: &TableInfo, delta: &str) -> TablePlan {
        TablePlan {
            keyed: KeyedTable::new(table),
            delta: delta.to_string(),
            row_bytes: 0,
            stall_cap: None,
        }
    }

    /// The most keys one chunk of this table may hold: `chunk_keys`, fewer when its
    /// rows are so wide that they would pass `chunk_bytes`, or after a stall.
    pub fn max_chunk_keys(&self, chunk_keys: i64, chunk_bytes: i64) -> i64 {
        let by_bytes = chunk_bytes.checked_div(self.row_bytes).unwrap_or(i64::MAX);
        chunk_keys
            .min(by_bytes)
            .min(self.stall_cap.unwrap_or(i64::MAX))
            .max(1)
    }

    /// `belt."d_…"`.
    pub fn delta_sql(&self) -> String {
        quote::qualified("belt", &self.delta)
    }

    /// Name of this table's temp table (`kind` is `r` for the sent keys and rows, `p`
    /// for the peer's summary).
    pub fn temp_table(&self, kind: char) -> String {
        format!("pg_temp.{}", quote::ident(&format!("belt_{kind}_{}", self.delta)))
    }

    /// The columns of the temp table a sender's winning keys and rows arrive in, on
    /// the receiver: the key, the other writable columns, and `belt_gone` (true when
    /// the key has no row on the sending side any more).
    pub fn sent_cols(&self) -> Vec<String> {
        let mut cols = self.key.clone();
        cols.extend(self.write_cols.iter().filter(|c| !self.key.contains(c)).cloned());
        cols
    }

    /// The sender's side of [`Self::apply_sql`]: for each key of `winners` (a
    /// query of key tuples), the key, its row's other columns and whether the row
    /// is gone, in [`Self::sent_cols`] order.
    pub fn sent_sql(&self, winners: &str) -> String {
        let cols: Vec<String> = self
            .sent_cols()
            .iter()
            .map(|c| {
                let from = if self.key.contains(c) { "w" } else { "t" };
                format!("{from}.{}", quote::ident(c))
            })
            .collect();
        let others: Vec<String> = self
            .sent_cols()
            .iter()
            .filter(|c| !self.key.contains(c))
            .map(|c| format!("t.{}", quote::ident(c)))
            .chain(["t.ctid".to_string()])
            .collect();
        // Each key is looked up by itself (OFFSET 0 keeps the subquery from being
        // joined as a whole): whatever the planner believes of a delta table's size,
        // and whatever plan a prepared statement keeps, a round never scans the
        // application's whole table.
        format!(
            "select {}, t.ctid is null from ({winners}) w left join lateral \
             (select {} from {} t where {} offset 0) t on true",
            cols.join(", "),
            others.join(", "),
            self.table.qualified(),
            self.key_join("t", "w")
        )
    }

    /// The receiver's statements for one chunk, in order, from the temp table `sent`
    /// (see [`Self::sent_cols`]): delete the rows whose keys changed and have no row on
    /// the sending side any more, then insert the sent rows, updating the ones that
    /// exist. An update in place (not delete + insert) keeps the row's version
    /// chain, so an application's concurrent foreign-key check that waits on the
    /// row still finds it afterwards.
    pub fn apply_sql(&self, sent: &str) -> Vec<String> {
        let t = self.table.qualified();
        let cols = quote::ident_list(&self.write_cols);
        let overriding = if self.identity {
            "overriding system value "
        } else {
            ""
        };
        let always: Vec<&str> = self
            .table
            .columns
            .iter()
            .filter(|c| c.identity_always)
            .map(|c| c.name.as_str())
            .collect();
        let set_cols: Vec<&String> = self
            .write_cols
            .iter()
            .filter(|c| !self.key.contains(c) && !always.contains(&c.as_str()))
            .collect();
        let set_from = |from: &str| {
            set_cols
                .iter()
                .map(|c| format!("{0} = {from}.{0}", quote::ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let delete = format!(
            "delete from {t} as t using {sent} as r where {join} and r.belt_gone",
            join = self.key_join("t", "r"),
        );
        if self.table.key_deferrable {
            // A deferrable key cannot arbitrate ON CONFLICT: update the rows that
            // exist, then insert the others.
            let update = (!set_cols.is_empty()).then(|| {
                format!(
                    "update {t} as t set {} from {sent} as r where {} and not r.belt_gone",
                    set_from("r"),
                    self.key_join("t", "r")
                )
            });
            let insert = format!(
                "insert into {t} ({cols}) {overriding}select {cols} from {sent} as r \
                 where not r.belt_gone and not exists (select 1 from {t} as t where {})",
                self.key_join("t", "r")
            );
            return [Some(delete), update, Some(insert)]
                .into_iter()
                .flatten()
                .collect();
        }
        let on_conflict = if set_cols.is_empty() {
            format!("on conflict ({}) do nothing", self.key_list())
        } else {
            format!(
                "on conflict ({}) do update set {}",
                self.key_list(),
                set_from("excluded")
            )
        };
        vec![
            delete,
            format!("insert into {t} ({cols}) {overriding}select {cols} from {sent} where not belt_gone {on_conflict}"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::TablePlan;
    use crate::pg::introspect::TableInfo;

    #[test]
    fn wide_rows_and_stalls_cut_the_chunk() {
        let info = TableInfo {
            schema: "public".into(),
            name: "t".into(),
            key: Some(vec!["id".into()]),
            columns: Vec::new(),
            key_deferrable: false,
        };
        let mut plan = TablePlan::new(&info, "d_t");
        assert_eq!(plan.max_chunk_keys(20_000, 32 << 20), 20_000, "width unknown");
        plan.row_bytes = 2 << 20;
        assert_eq!(plan.max_chunk_keys(20_000, 32 << 20), 16);
        plan.row_bytes = 64 << 20;
        assert_eq!(plan.max_chunk_keys(20_000, 32 << 20), 1, "never below one key");
        plan.row_bytes = 100;
        plan.stall_cap = Some(2_500);
        assert_eq!(plan.max_chunk_keys(20_000, 32 << 20), 2_500);
    }
}
