//! A table by its key: the columns belt writes and the SQL for ranges of keys. The
//! initial copy, verify and the rounds all cut tables into key ranges; this is the
//! one place that writes those ranges.

use super::introspect::TableInfo;
use super::quote;

/// A table with its key resolved, and the SQL fragments every key-range reader needs.
#[derive(Debug, Clone)]
pub struct KeyedTable {
    pub table: TableInfo,
    /// Key columns (primary key or NOT NULL unique index); empty when it has none.
    pub key: Vec<String>,
    /// `format_type` of each key column, for casting inlined key values.
    pub key_types: Vec<String>,
    /// Columns written on apply and copy: every column but generated ones.
    pub write_cols: Vec<String>,
    /// Whether an identity column needs `OVERRIDING SYSTEM VALUE`.
    pub identity: bool,
}

impl KeyedTable {
    /// Resolves `table`'s key and writable columns.
    pub fn new(table: &TableInfo) -> KeyedTable {
        let table = table.clone();
        let key = table.key.clone().unwrap_or_default();
        let key_types = key
            .iter()
            .map(|k| {
                table
                    .columns
                    .iter()
                    .find(|c| &c.name == k)
                    .map(|c| c.type_name.clone())
                    .unwrap_or_else(|| "text".into())
            })
            .collect();
        let write_cols = table
            .columns
            .iter()
            .filter(|c| !c.generated)
            .map(|c| c.name.clone())
            .collect();
        let identity = table.columns.iter().any(|c| c.identity);
        KeyedTable {
            key,
            key_types,
            write_cols,
            identity,
            table,
        }
    }

    /// `"k1", "k2"`.
    pub fn key_list(&self) -> String {
        quote::ident_list(&self.key)
    }

    /// `'v1'::t1, 'v2'::t2`: a key given as text, typed like this table's key.
    pub fn key_values(&self, key: &[String]) -> String {
        key.iter()
            .zip(&self.key_types)
            .map(|(v, t)| format!("{}::{t}", quote::literal(v)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `(k1, k2) <= ('v1'::t1, 'v2'::t2)`: the keys up to and including `hi`.
    pub fn key_at_most(&self, hi: &[String]) -> String {
        format!("({}) <= ({})", self.key_list(), self.key_values(hi))
    }

    /// `(k1, k2) > ('v1'::t1, 'v2'::t2)`: the keys after `lo`.
    pub fn key_above(&self, lo: &[String]) -> String {
        format!("({}) > ({})", self.key_list(), self.key_values(lo))
    }

    /// The keys after `lo` (all when `None`) up to and including `hi` (no upper
    /// bound when `None`): `true` when neither bound is given.
    pub fn key_range(&self, lo: Option<&[String]>, hi: Option<&[String]>) -> String {
        match (lo.map(|l| self.key_above(l)), hi.map(|h| self.key_at_most(h))) {
            (Some(l), Some(h)) => format!("{l} and {h}"),
            (Some(b), None) | (None, Some(b)) => b,
            (None, None) => "true".into(),
        }
    }

    /// `t."k1" = k."k1" and …`.
    pub fn key_join(&self, left: &str, right: &str) -> String {
        self.key
            .iter()
            .map(|k| format!("{left}.{c} = {right}.{c}", c = quote::ident(k)))
            .collect::<Vec<_>>()
            .join(" and ")
    }
}
