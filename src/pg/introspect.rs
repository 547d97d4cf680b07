//! What a database holds: tables, their keys and columns, and its sequences.

use tokio_postgres::Client;

use super::error::DbError;
use super::quote;

/// A table as belt replicates it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    /// Primary key, else the columns of a NOT NULL unique index; `None` when the
    /// table has neither and cannot be captured row by row.
    pub key: Option<Vec<String>>,
    /// Every column, in table order.
    pub columns: Vec<ColumnInfo>,
    /// The key's constraint is DEFERRABLE: it cannot arbitrate `ON CONFLICT`, so apply
    /// updates and inserts separately.
    #[serde(default)]
    pub key_deferrable: bool,
}

/// One column and what belt must know to write it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    /// `format_type()` of the column: `integer`, `numeric(10,2)`, `"MyEnum"`.
    pub type_name: String,
    /// Generated columns are computed by the target, never written.
    pub generated: bool,
    /// Identity columns are written with `OVERRIDING SYSTEM VALUE`.
    pub identity: bool,
    /// `GENERATED ALWAYS AS IDENTITY`: an UPDATE may not set it, so apply leaves it
    /// out of its update list (a `BY DEFAULT` identity is updated like any column).
    #[serde(default)]
    pub identity_always: bool,
}

impl TableInfo {
    /// `"schema"."name"`.
    pub fn qualified(&self) -> String {
        quote::qualified(&self.schema, &self.name)
    }

    /// `schema.name` for messages.
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// A table named by the operator: `name` (schema from context) or `schema.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    /// Parses `schema.table` or `table` (in `default_schema`); double quotes keep case.
    pub fn parse(text: &str, default_schema: &str) -> TableName {
        let parts = split_dotted(text);
        match parts.as_slice() {
            [schema, name] => TableName {
                schema: schema.clone(),
                name: name.clone(),
            },
            _ => TableName {
                schema: default_schema.to_string(),
                name: parts.concat(),
            },
        }
    }

    /// `schema.name`, for messages.
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

fn split_dotted(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                parts.last_mut().expect("part").push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(String::new()),
            c if quoted => parts.last_mut().expect("part").push(c),
            c => parts.last_mut().expect("part").extend(c.to_lowercase()),
        }
    }
    parts
}

const TABLES_SQL: &str = "
select n.nspname, c.relname
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.relkind in ('r', 'p') and not c.relispartition
   and n.nspname not in ('pg_catalog', 'information_schema', 'belt')
   and n.nspname not like 'pg\\_%'
   and ($1::text is null or n.nspname = $1)
 order by 1, 2";

const TABLE_SQL: &str = "
select c.oid::int8
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p')";

const COLUMNS_SQL: &str = "
select a.attname::text, format_type(a.atttypid, a.atttypmod),
       a.attgenerated <> '', a.attidentity <> '', a.attidentity = 'a'
  from pg_attribute a
 where a.attrelid = $1::int8::oid and a.attnum > 0 and not a.attisdropped
 order by a.attnum";

const KEY_SQL: &str = "
select array(select a.attname::text
               from unnest(i.indkey) with ordinality k(attnum, ord)
               join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
              order by k.ord),
       not i.indimmediate
  from pg_index i
 where i.indrelid = $1::int8::oid and i.indisunique and i.indisvalid
   and i.indpred is null and i.indexprs is null
   and not exists (select 1 from unnest(i.indkey) k(attnum)
                    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                   where not a.attnotnull or k.attnum <= 0)
 order by i.indisprimary desc, i.indnatts, i.indexrelid
 limit 1";

/// `(schema, name)` rows as names.
fn table_names(rows: &[tokio_postgres::Row]) -> Vec<TableName> {
    rows.iter()
        .map(|r| TableName {
            schema: r.get(0),
            name: r.get(1),
        })
        .collect()
}

/// Every user table of the database (or of one schema), outside belt's own schema.
pub async fn list_tables(client: &Client, db: &str, schema: Option<&str>) -> Result<Vec<TableName>, DbError> {
    let rows = client
        .query(TABLES_SQL, &[&schema])
        .await
        .map_err(|e| DbError::query(db, "list tables", e))?;
    Ok(table_names(&rows))
}

/// Columns and key of one table; `None` when the table does not exist.
pub async fn describe_table(
    client: &Client,
    db: &str,
    table: &TableName,
) -> Result<Option<TableInfo>, DbError> {
    let ctx = |what: &str| format!("{what} of {}.{}", table.schema, table.name);
    let Some(row) = client
        .query_opt(TABLE_SQL, &[&table.schema, &table.name])
        .await
        .map_err(|e| DbError::query(db, ctx("look up"), e))?
    else {
        return Ok(None);
    };
    let oid: i64 = row.get(0);
    let columns = client
        .query(COLUMNS_SQL, &[&oid])
        .await
        .map_err(|e| DbError::query(db, ctx("read columns"), e))?
        .iter()
        .map(|r| ColumnInfo {
            name: r.get(0),
            type_name: r.get(1),
            generated: r.get(2),
            identity: r.get(3),
            identity_always: r.get(4),
        })
        .collect();
    let key = client
        .query_opt(KEY_SQL, &[&oid])
        .await
        .map_err(|e| DbError::query(db, ctx("read key"), e))?;
    Ok(Some(TableInfo {
        schema: table.schema.clone(),
        name: table.name.clone(),
        key_deferrable: key.as_ref().is_some_and(|r| r.get(1)),
        key: key.map(|r| r.get::<_, Vec<String>>(0)),
        columns,
    }))
}

/// Every sequence of the database outside schema belt, owned by a column or not: an
/// application that calls `nextval('invoice_no')` itself needs it carried too.
pub async fn all_sequences(client: &Client, db: &str) -> Result<Vec<TableName>, DbError> {
    let rows = client
        .query(
            "select n.nspname::text, c.relname::text from pg_class c \
             join pg_namespace n on n.oid = c.relnamespace \
             where c.relkind = 'S' and n.nspname not in ('belt', 'pg_catalog', 'information_schema') \
             and n.nspname not like 'pg\\_%' \
             and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass \
                             and d.objid = c.oid and d.deptype = 'e') order by 1, 2",
            &[],
        )
        .await
        .map_err(|e| DbError::query(db, "list sequences", e))?;
    Ok(table_names(&rows))
}

#[cfg(test)]
mod tests {
    use super::TableName;

    #[test]
    fn parses_table_names_like_postgres() {
        assert_eq!(
            TableName::parse("Orders", "public"),
            TableName {
                schema: "public".into(),
                name: "orders".into()
            }
        );
        assert_eq!(
            TableName::parse("\"Sales\".\"My.Table\"", "public"),
            TableName {
                schema: "Sales".into(),
                name: "My.Table".into()
            }
        );
        assert_eq!(
            TableName::parse("s.t", "public"),
            TableName {
                schema: "s".into(),
                name: "t".into()
            }
        );
    }
}
