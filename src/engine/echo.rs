//! Rule 3 of DESIGN.md: no echo.
//!
//! Every session that applies rows runs with `session_replication_role = replica`, so
//! the capture triggers (and foreign-key triggers) do not fire for replicated writes:
//! a row written on A reaches B once and is not captured on B to travel back. A role
//! that may not set it gets a refusal that names the privilege, before anything is
//! written, rather than a sync that loops forever.

use tokio_postgres::Client;

use crate::pg::DbError;

/// What to grant when the apply role may not set `session_replication_role`.
pub const PRIVILEGE_HINT: &str = "the role belt connects as must be allowed to set \
     session_replication_role: make it superuser, grant rds_superuser on Amazon RDS, or on \
     PostgreSQL 15+ run GRANT SET ON PARAMETER session_replication_role TO <role>";

/// Puts a receiving session in replica mode.
pub async fn prepare_receiver(client: &Client, db: &str) -> Result<(), DbError> {
    let Err(e) = client
        .batch_execute("set session_replication_role = replica")
        .await
    else {
        return Ok(());
    };
    if e.code().map(|c| c.code()) != Some("42501") {
        return Err(DbError::query(db, "set session_replication_role = replica", e));
    }
    let role = match client.query_one("select quote_ident(current_user)", &[]).await {
        Ok(row) => row.get::<_, String>(0),
        Err(_) => "<role>".into(),
    };
    Err(DbError::Settings {
        db: db.to_string(),
        message: format!(
            "cannot apply changes without echo: {}",
            PRIVILEGE_HINT.replace("<role>", &role)
        ),
    })
}

/// Checks, without changing anything, that a session may use replica mode.
pub async fn check_receiver(client: &Client, db: &str) -> Result<(), DbError> {
    prepare_receiver(client, db).await?;
    client
        .batch_execute("reset session_replication_role")
        .await
        .map_err(|e| DbError::query(db, "reset session_replication_role", e))
}
