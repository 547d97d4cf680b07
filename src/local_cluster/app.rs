//! An application as production runs it, on a throwaway cluster: the schema is owned
//! by `app_owner` (a role nobody logs in as) and the application connects as
//! `app_user`, a login role that owns nothing and holds only DML grants. Tests, the
//! demo and the benchmarks write through it, so that belt is exercised the way it is
//! met in the field: capture must work for a role that cannot see schema belt.

use tokio_postgres::Client;

use super::{io, ClusterError, LocalCluster};
use crate::pg::{connect, quote, DbError, DbSpec};

/// Owns the application's schema; cannot log in.
pub const APP_OWNER: &str = "app_owner";
/// The application's login role: DML grants only.
pub const APP_USER: &str = "app_user";

/// Setting up the application failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{what} on database '{db}': {source}")]
    Sql {
        what: String,
        db: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

fn sql(what: &str, db: &str) -> impl FnOnce(tokio_postgres::Error) -> AppError {
    let (what, db) = (what.to_string(), db.to_string());
    move |source| AppError::Sql { what, db, source }
}

impl LocalCluster {
    /// File holding `app_user`'s password.
    pub fn app_password_file(&self) -> std::path::PathBuf {
        self.dir.join("app-pwfile")
    }

    /// A database definition for `dbname` as the application's login role.
    pub fn app_spec(&self, name: &str, dbname: &str) -> DbSpec {
        DbSpec {
            name: name.to_string(),
            conninfo: format!(
                "host=127.0.0.1 port={} user={APP_USER} dbname={dbname}",
                self.port
            ),
            password_env: None,
            password_file: Some(self.app_password_file()),
            password_command: None,
            password_ttl: None,
        }
    }

    /// Creates the application's two roles on this server, once.
    pub async fn create_app_roles(&self) -> Result<(), AppError> {
        let admin = connect(&self.db_spec("admin", "postgres")).await?;
        let exists: bool = admin
            .query_one(
                "select exists (select 1 from pg_roles where rolname = $1)",
                &[&APP_USER],
            )
            .await
            .map_err(sql("look for the application role", "postgres"))?
            .get(0);
        if exists {
            return Ok(());
        }
        let password = format!("app-{}", self.port);
        std::fs::write(self.app_password_file(), &password).map_err(io("write app password file"))?;
        admin
            .batch_execute(&format!(
                "create role {APP_OWNER} nologin; create role {APP_USER} login password {}",
                quote::literal(&password)
            ))
            .await
            .map_err(sql("create the application roles", "postgres"))
    }

    /// Creates database `dbname` owned by `app_owner`, runs `schema` in it as
    /// `app_owner`, and grants `app_user` DML on everything the schema made (and on
    /// what `app_owner` creates later). Returns a session as the owner.
    pub async fn create_app_database(&self, dbname: &str, schema: &str) -> Result<Client, AppError> {
        self.create_app_roles().await?;
        let admin = connect(&self.db_spec("admin", "postgres")).await?;
        admin
            .batch_execute(&format!(
                "create database {} owner {APP_OWNER}",
                quote::ident(dbname)
            ))
            .await
            .map_err(sql("create database", dbname))?;
        let owner = self.owner_session(dbname).await?;
        owner
            .batch_execute(schema)
            .await
            .map_err(sql("create the application's schema", dbname))?;
        grant_dml(&owner, dbname).await?;
        Ok(owner)
    }

    /// A session on `dbname` as the schema's owner (for DDL), search_path public.
    pub async fn owner_session(&self, dbname: &str) -> Result<Client, AppError> {
        let client = connect(&self.db_spec("owner", dbname)).await?;
        client
            .batch_execute(&format!("set role {APP_OWNER}; set search_path = public"))
            .await
            .map_err(sql("become the owner", dbname))?;
        Ok(client)
    }
}

/// Grants `app_user` DML on every table and sequence of the application's schemas,
/// and the same by default on what `app_owner` creates later.
pub async fn grant_dml(owner: &Client, dbname: &str) -> Result<(), AppError> {
    let schemas: Vec<String> = owner
        .query(
            "select nspname::text from pg_namespace where nspname not in ('pg_catalog', \
             'information_schema', 'belt') and nspname not like 'pg\\_%'",
            &[],
        )
        .await
        .map_err(sql("list schemas", dbname))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut grants = String::new();
    for s in &schemas {
        let s = quote::ident(s);
        grants.push_str(&format!(
            "grant usage on schema {s} to {APP_USER}; \
             grant select, insert, update, delete on all tables in schema {s} to {APP_USER}; \
             grant usage, select on all sequences in schema {s} to {APP_USER}; "
        ));
    }
    grants.push_str(&format!(
        "alter default privileges for role {APP_OWNER} grant select, insert, update, delete on tables to {APP_USER}; \
         alter default privileges for role {APP_OWNER} grant usage, select on sequences to {APP_USER};"
    ));
    owner
        .batch_execute(&grants)
        .await
        .map_err(sql("grant the application DML", dbname))
}
