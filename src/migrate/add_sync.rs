//! Adding a sync: connect its databases, check what it needs on each (the tables,
//! and on each receiving side the right to apply without echo), then store it. The
//! CLI's `add sync`, `update sync` and plan files all come through here.

use super::WorkflowError;
use crate::catalog::{Catalog, CatalogError, CopyState, Member, SyncDef};
use crate::engine::echo::check_receiver;
use crate::pg::connect;
use crate::pg::introspect::{TableInfo, TableName};
use crate::tables::{self, Selection};

/// Checks the sync's databases and tables and returns the tables it would
/// replicate. Changes nothing.
pub async fn check_sync(
    catalog: &Catalog,
    def: &SyncDef,
    selection: &Selection,
) -> Result<Vec<TableInfo>, WorkflowError> {
    let pair = catalog.db_pair(def)?;
    let (specs, sources) = (&pair.specs, pair.sources());
    let clients = [connect(&specs[0]).await?, connect(&specs[1]).await?];
    for i in 0..2 {
        if sources[1 - i] {
            check_receiver(&clients[i], &specs[i].name).await?;
        }
    }
    let s = crate::catalog::first_source(sources);
    let tables = tables::resolve(
        &clients[s],
        &specs[s].name,
        &clients[1 - s],
        &specs[1 - s].name,
        selection,
        def.copy != CopyState::Done,
    )
    .await?;
    catalog.refuse_shared_capture(def, &tables)?;
    Ok(tables)
}

/// Checks the sync, then stores it with its tables. Changes no database.
pub async fn add_sync(
    catalog: &mut Catalog,
    def: &SyncDef,
    selection: &Selection,
) -> Result<Vec<TableInfo>, WorkflowError> {
    if catalog.sync(&def.name)?.is_some() {
        return Err(CatalogError::Exists {
            kind: "sync",
            name: def.name.clone(),
        }
        .into());
    }
    let tables = check_sync(catalog, def, selection).await?;
    catalog.add_sync(def, &tables)?;
    Ok(tables)
}

/// Gives a sync's databases new roles (the same databases, e.g. `src:target,dst:source`
/// to turn the src → dst direction off), after checking the sync as it would be.
pub async fn update_roles(
    catalog: &mut Catalog,
    name: &str,
    members: Vec<Member>,
) -> Result<SyncDef, WorkflowError> {
    let mut def = catalog.require_sync(name)?;
    let mut old: Vec<&str> = def.members.iter().map(|m| m.db.as_str()).collect();
    let mut new: Vec<&str> = members.iter().map(|m| m.db.as_str()).collect();
    old.sort_unstable();
    new.sort_unstable();
    if old != new {
        return Err(WorkflowError::Definition(format!(
            "--dbs: sync '{}' has databases {}; update changes roles, not databases",
            def.name,
            old.join(", ")
        )));
    }
    def.members = members;
    let tables: Vec<TableName> = catalog
        .relations(&def.name)?
        .into_iter()
        .map(|t| TableName {
            schema: t.schema,
            name: t.name,
        })
        .collect();
    check_sync(catalog, &def, &Selection::Listed(tables)).await?;
    catalog.set_members(&def.name, &def.members)?;
    Ok(def)
}
