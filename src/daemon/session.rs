//! A connected one-way sync: sessions on both databases, capture installed on the
//! source, and the plan of every captured table.

use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::capture::{self, TriggerMode, KICK_CHANNEL};
use crate::engine::apply::prepare_target;
use crate::engine::{EngineError, TablePlan};
use crate::pg::introspect::{owned_sequences, TableName};
use crate::pg::{connect, connect_listening, DbError, DbSpec};
use crate::tables::{self, Selection, TableError};

/// Live sessions of one sync.
pub struct Session {
    pub src_db: String,
    pub dst_db: String,
    pub src: Client,
    pub dst: Client,
    /// NOTIFYs on the source's kick channel.
    pub notifications: mpsc::UnboundedReceiver<String>,
    pub plans: Vec<TablePlan>,
}

/// Why a session could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Tables(#[from] TableError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<DbError> for SessionError {
    fn from(e: DbError) -> Self {
        SessionError::Engine(EngineError::Db(e))
    }
}

impl SessionError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SessionError::Tables(TableError::Db(e)) => e.is_transient(),
            SessionError::Tables(_) => false,
            SessionError::Engine(e) => e.is_transient(),
        }
    }
}

impl Session {
    /// Connects both databases, checks the tables, installs capture and LISTENs.
    pub async fn open(
        src_spec: &DbSpec,
        dst_spec: &DbSpec,
        tables: &[TableName],
    ) -> Result<Session, SessionError> {
        let (mut src, notifications) = connect_listening(src_spec).await?;
        let dst = connect(dst_spec).await?;
        let (src_db, dst_db) = (src_spec.name.clone(), dst_spec.name.clone());
        prepare_target(&dst, &dst_db).await?;
        let selection = Selection::Listed(tables.to_vec());
        let infos = tables::resolve(&src, &src_db, &dst, &dst_db, &selection).await?;
        let captured = capture::install(&mut src, &src_db, &infos, TriggerMode::Statement).await?;
        let mut plans = Vec::new();
        for c in &captured {
            let seqs = owned_sequences(&src, &src_db, &c.table).await?;
            plans.push(TablePlan::new(c, seqs));
        }
        src.batch_execute(&format!("listen {KICK_CHANNEL}"))
            .await
            .map_err(|e| DbError::query(&src_db, "listen for changes", e))?;
        Ok(Session {
            src_db,
            dst_db,
            src,
            dst,
            notifications,
            plans,
        })
    }
}
