//! Errors from talking to a database, and the one place that decides whether a
//! failure is worth retrying.

use tokio_postgres::error::SqlState;

/// Something went wrong with one named database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server could not be reached at all.
    #[error("cannot connect to database '{db}' ({target}): {reason}; check that the server is running and that host and port are right")]
    Unreachable {
        db: String,
        target: String,
        reason: String,
    },
    /// The server refused the login.
    #[error("database '{db}' refused the login ({target}): {reason}; check the password (password_env, password_file, password_command or pgpass) and pg_hba.conf")]
    Auth {
        db: String,
        target: String,
        reason: String,
    },
    /// The TLS handshake failed: certificate, host name or server refusing TLS.
    #[error("cannot connect to database '{db}' securely ({target}): {reason}; check sslmode, sslrootcert and the host names in the server's certificate")]
    Tls {
        db: String,
        target: String,
        reason: String,
    },
    /// The `password_command` of the database failed (non-zero exit, timeout, no
    /// output); what it printed on stdout is never shown.
    #[error("database '{db}': password_command {program} failed: {message}")]
    PasswordCommand {
        db: String,
        program: String,
        message: String,
    },
    /// The settings cannot be used (bad conninfo, unset password_env, …).
    #[error("database '{db}': {message}")]
    Settings { db: String, message: String },
    /// The database answered nothing for too long (a dead or partitioned network
    /// path); the session is dropped and the work tried again on a new one.
    #[error("database '{db}' answered nothing for {secs:.0}s while belt was {what}; the network path may be down, retrying on a new connection (stall_timeout_ms sets the limit)")]
    Stalled { db: String, what: String, secs: f64 },
    /// Every connection belt may hold to the server was in use for
    /// [`super::budget::WAIT`]; the work is tried again.
    #[error("database '{db}': the {limit} connections belt may hold to server {server} (max_connections_per_server) stayed in use for {}s; trying again", super::budget::WAIT.as_secs())]
    Budget {
        db: String,
        server: String,
        limit: usize,
    },
    /// A statement failed.
    #[error("database '{db}': {context}")]
    Query {
        db: String,
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl DbError {
    /// Wraps a failed statement with what belt was doing.
    pub fn query(db: &str, context: impl Into<String>, source: tokio_postgres::Error) -> DbError {
        DbError::Query {
            db: db.to_string(),
            context: context.into(),
            source,
        }
    }

    /// Whether running the same work again may succeed: a dropped connection, a
    /// serialization failure, a server shutting down. Unknown errors count as
    /// transient; only errors that repeat identically (bad SQL, missing objects,
    /// privileges, data that does not fit) are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Unreachable { .. }
            | DbError::Stalled { .. }
            | DbError::PasswordCommand { .. }
            | DbError::Budget { .. } => true,
            DbError::Auth { .. } | DbError::Settings { .. } | DbError::Tls { .. } => false,
            DbError::Query { source, .. } => is_transient_pg(source),
        }
    }

    /// The SQLSTATE of the server's error, if there was one.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            DbError::Query { source, .. } => source.code(),
            _ => None,
        }
    }
}

/// The retry decision for one tokio-postgres error, keyed on the SQLSTATE class.
pub fn is_transient_pg(e: &tokio_postgres::Error) -> bool {
    let Some(code) = e.code() else {
        return true; // I/O, closed connection, timeout
    };
    if code == &SqlState::LOCK_NOT_AVAILABLE {
        return true; // a lock timeout: the application held the row
    }
    // Class 55 (an object not in the state the statement needs: wal_level, a
    // sequence not yet used, …) stays so until someone changes it.
    let class = &code.code()[..2];
    !matches!(
        class,
        "0A" | "22" | "23" | "28" | "2B" | "3D" | "3F" | "42" | "44" | "55" | "P0"
    )
}

/// Renders an error and its sources on one line, skipping a source whose text the
/// previous message already carries (tokio-postgres repeats its cause).
pub fn render(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = e.source();
    }
    out
}
