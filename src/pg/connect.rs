//! Opening sessions: password resolution, errors that say which database and why,
//! and the session settings every belt session pins.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client};

use super::dbspec::{describe_config, DbSpec};
use super::error::DbError;
use super::password;
use super::tls;

/// Settings pinned on every session, so that text forms of values and the meaning of
/// our SQL do not depend on server or role defaults. `row_security = off` makes a
/// statement that row-level security would filter fail instead: belt must never copy,
/// compare or apply part of a table without knowing it. `jit = off`: a round's
/// statements are small, and a plan whose estimates are high (a delta table's stale
/// statistics) would otherwise be compiled anew on every run of it.
const SESSION_SETTINGS: &str = "set standard_conforming_strings = on; set row_security = off; \
     set search_path = pg_catalog, pg_temp; set datestyle = 'ISO, YMD'; \
     set intervalstyle = 'postgres'; set extra_float_digits = 3; set timezone = 'UTC'; \
     set bytea_output = 'hex'; set jit = off";

/// Connects to `spec`, resolving its password, and pins the session settings.
pub async fn connect(spec: &DbSpec) -> Result<Client, DbError> {
    let client = open(spec, None).await?;
    pin_settings(spec, &client).await?;
    Ok(client)
}

/// Connects and forwards the channel name of every NOTIFY received on the session
/// to `notify` (several sessions may share one sender).
pub async fn connect_listening(
    spec: &DbSpec,
    notify: mpsc::UnboundedSender<String>,
) -> Result<Client, DbError> {
    let client = open(spec, Some(notify)).await?;
    pin_settings(spec, &client).await?;
    Ok(client)
}

async fn pin_settings(spec: &DbSpec, client: &Client) -> Result<(), DbError> {
    client
        .batch_execute(SESSION_SETTINGS)
        .await
        .map_err(|e| DbError::query(&spec.name, "set session settings", e))
}

/// Opens a session and spawns the task that drives its connection (forwarding
/// NOTIFYs to `notify` when given).
async fn open(spec: &DbSpec, notify: Option<mpsc::UnboundedSender<String>>) -> Result<Client, DbError> {
    let (mut config, tls) = spec.settings().map_err(|e| DbError::Settings {
        db: spec.name.clone(),
        message: e.to_string(),
    })?;
    if config.get_application_name().is_none() {
        config.application_name("belt");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if let Some(pw) = password::resolve(spec, &config).await? {
        config.password(pw);
    }
    let target = describe_config(&config);
    // Listening connections (one per source database) are outside the budget.
    let permit = match notify {
        Some(_) => None,
        None => Some(super::budget::acquire(&super::budget::server_of(spec), &spec.name).await?),
    };
    let settings = |message: String| DbError::Settings {
        db: spec.name.clone(),
        message,
    };
    let tls = tls::client_config(&tls).map_err(settings)?;
    let (client, mut connection) = config
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        .await
        .map_err(|e| {
            let e = classify_connect_error(spec, target, e);
            if matches!(e, DbError::Auth { .. }) {
                password::forget(spec);
            }
            e
        })?;
    tokio::spawn(async move {
        let Some(notify) = notify else {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed");
            }
            drop(permit); // the connection is gone: its place in the budget is free
            return;
        };
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(msg) = messages.next().await {
            match msg {
                Ok(AsyncMessage::Notification(n)) => {
                    if notify.send(n.channel().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "listening connection closed");
                    break;
                }
            }
        }
    });
    Ok(client)
}

fn classify_connect_error(spec: &DbSpec, target: String, e: tokio_postgres::Error) -> DbError {
    let db = spec.name.clone();
    let reason = super::error::render(&e);
    match e.code().map(|c| &c.code()[..2]) {
        Some("28") => DbError::Auth { db, target, reason },
        Some(_) => DbError::query(&spec.name, format!("connect ({target})"), e),
        None if reason.contains("TLS") || reason.contains("certificate") => {
            DbError::Tls { db, target, reason }
        }
        None if reason.contains("password missing") => DbError::Auth {
            db,
            target,
            reason: "the server asks for a password and none was found".into(),
        },
        None => DbError::Unreachable { db, target, reason },
    }
}

/// The whole environment a client program (`pg_dump`, `psql`) run on behalf of
/// `spec` needs: [`DbSpec::libpq_env`] plus `PGPASSWORD` when belt resolved a
/// password. The child's environment is readable only by the same user, unlike argv.
pub async fn child_env(spec: &DbSpec) -> Result<Vec<(&'static str, String)>, DbError> {
    let settings = |e: super::dbspec::DbSpecError| DbError::Settings {
        db: spec.name.clone(),
        message: e.to_string(),
    };
    let config = spec.config().map_err(settings)?;
    let mut env = spec.libpq_env().map_err(settings)?;
    if let Some(pw) = password::resolve(spec, &config).await? {
        env.push(("PGPASSWORD", String::from_utf8_lossy(&pw).into_owned()));
    }
    Ok(env)
}
