//! A sync added with `--tables all` follows the database: a table created on its first
//! source afterwards is picked up without a `beltctl` call. The target gets the table
//! from pg_dump when it lacks it; capture is installed on every source; then every
//! existing key of the table is queued in its delta table, so the ordinary rounds
//! copy it — in bounded chunks, state-based, with no gap, since capture was in place
//! before the keys were read (rule 6) — and the table is added to the sync.

use tracing::info;

use super::error::SyncError;
use super::session::Session;
use crate::capture::{self, TriggerMode};
use crate::catalog::{CatalogError, CatalogHandle};
use crate::engine::Side;
use crate::pg::introspect::{describe_table, list_tables, TableName};
use crate::pg::{connect, quote, DbError, DbSpec};
use crate::schema;

/// Tables of the first source, in the sync's schema selection (`""`: every schema),
/// that no sync of the catalog replicates from that database yet.
async fn new_tables(
    catalog: &CatalogHandle,
    session: &Session,
    first: usize,
    schema: &str,
) -> Result<Vec<TableName>, SyncError> {
    let side = &session.sides[first];
    let filter = (!schema.is_empty()).then_some(schema);
    let present = list_tables(&side.client, &side.db, filter).await?;
    let db = side.db.clone();
    let known: Vec<String> = catalog
        .call(move |c| {
            let mut names = Vec::new();
            for def in c.syncs()? {
                if def.members.iter().any(|m| m.db == db) {
                    names.extend(c.relations(&def.name)?.iter().map(|t| t.display_name()));
                }
            }
            Ok::<_, CatalogError>(names)
        })
        .await?;
    Ok(present
        .into_iter()
        .filter(|t| !known.contains(&t.display_name()))
        .collect())
}

/// Whether the first source (`side`) has a table, in the sync's schema selection, that
/// sync `sync` does not hold: one catalog query on the source, for an idle sync to
/// decide whether a round (which picks it up) is due.
pub async fn has_new(
    catalog: &CatalogHandle,
    sync: &str,
    side: &Side,
    schema: &str,
) -> Result<bool, SyncError> {
    let filter = (!schema.is_empty()).then_some(schema);
    let present = list_tables(&side.client, &side.db, filter).await?;
    let sync = sync.to_string();
    let known: Vec<String> = catalog
        .call(move |c| Ok::<_, CatalogError>(c.relations(&sync)?.iter().map(|t| t.display_name()).collect()))
        .await?;
    Ok(present.iter().any(|t| !known.contains(&t.display_name())))
}

/// Picks up the tables created on the first source since the sync was added; returns
/// how many. The caller reconnects, so that the new tables join the rounds.
pub async fn pick_up(
    catalog: &CatalogHandle,
    sync: &str,
    session: &mut Session,
    specs: &[DbSpec; 2],
    first: usize,
    schema: &str,
) -> Result<usize, SyncError> {
    let tables = new_tables(catalog, session, first, schema).await?;
    for name in &tables {
        let from = &session.sides[first];
        let Some(info) = describe_table(&from.client, &from.db, name).await? else {
            continue; // dropped again meanwhile
        };
        let other = &session.sides[1 - first];
        if describe_table(&other.client, &other.db, name).await?.is_none() {
            let mut dst = connect(&specs[1 - first]).await?;
            let created = schema::create_table(&specs[first], &mut dst, &specs[1 - first].name, name).await?;
            info!(sync, table = %name.display_name(), objects = created, "table created on the target");
        }
        let mut delta = None;
        for side in session.sides.iter_mut().filter(|s| s.source) {
            let captured = capture::install(
                &mut side.client,
                &side.db,
                std::slice::from_ref(&info),
                TriggerMode::Statement,
            )
            .await?;
            if side.db == specs[first].name {
                delta = captured.into_iter().next().map(|c| c.delta);
            }
        }
        if let (Some(delta), Some(key)) = (delta, &info.key) {
            // Every existing row, queued like a change: the rounds copy it in chunks.
            let keys = quote::ident_list(key);
            let from = &session.sides[first];
            let queued = from
                .client
                .execute(
                    &format!(
                        "insert into belt.{} ({keys}) select {keys} from {}",
                        quote::ident(&delta),
                        info.qualified()
                    ),
                    &[],
                )
                .await
                .map_err(|e| {
                    DbError::query(&from.db, format!("queue the rows of {}", name.display_name()), e)
                })?;
            info!(sync, table = %name.display_name(), rows = queued, "table picked up");
        }
        let (sync, info) = (sync.to_string(), info.clone());
        catalog.call(move |c| c.add_relation(&sync, &info)).await?;
    }
    Ok(tables.len())
}
