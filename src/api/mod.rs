//! The daemon's control API: `/healthz` (the process answers and its catalog opens),
//! `/readyz` (and no sync has failed), `/metrics` (Prometheus text) and `/status`
//! (JSON), on 127.0.0.1 or a unix socket (mode 0600), for monitoring, for a
//! Kubernetes probe and for beltctl to tell whether the daemon runs.
//!
//! Plain HTTP/1.1, GET only, one request per connection: three read-only endpoints on
//! a local address do not need a web framework in the daemon's dependency tree.

pub mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

use crate::catalog::{CatalogHandle, StatusReport};

/// Where the API listens: `127.0.0.1:7543` or `unix:/run/belt/api.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Listen {
    /// Parses the `listen:` setting.
    pub fn parse(text: &str) -> Result<Listen, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            return Ok(Listen::Unix(path.into()));
        }
        text.parse()
            .map(Listen::Tcp)
            .map_err(|_| format!("'{text}' is neither HOST:PORT nor unix:/path"))
    }
}

/// A bound listener.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// The API could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {what}: {source}; set `listen:` in the config to a free address or unix:/path")]
pub struct ListenError {
    what: String,
    #[source]
    source: std::io::Error,
}

/// Binds the API's address (a unix socket is created with mode 0600).
pub async fn bind(listen: &Listen) -> Result<Listener, ListenError> {
    match listen {
        Listen::Tcp(addr) => TcpListener::bind(addr)
            .await
            .map(Listener::Tcp)
            .map_err(|source| ListenError {
                what: addr.to_string(),
                source,
            }),
        Listen::Unix(path) => {
            let err = |source| ListenError {
                what: path.display().to_string(),
                source,
            };
            let _ = std::fs::remove_file(path);
            let listener = UnixListener::bind(path).map_err(err)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
            Ok(Listener::Unix(listener))
        }
    }
}

/// What the endpoints read.
#[derive(Clone)]
pub struct ApiState {
    pub catalog: CatalogHandle,
    pub metrics: Option<PrometheusHandle>,
}

/// Serves until the task is dropped.
pub async fn serve(listener: Listener, state: ApiState) {
    let mut failures = 0u32;
    loop {
        let state = state.clone();
        // A failed accept (out of file descriptors) is not retried at once: that
        // would spin a core while nothing can change.
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(conn, _)| {
                tokio::spawn(async move { handle(conn, &state).await });
            }),
            Listener::Unix(l) => l.accept().await.map(|(conn, _)| {
                tokio::spawn(async move { handle(conn, &state).await });
            }),
        };
        match accepted {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                let pause = Duration::from_millis(10 << failures.min(7));
                tracing::warn!(error = %e, retry_in = ?pause, "api: cannot accept a connection");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

async fn handle<C: AsyncRead + AsyncWrite + Unpin>(mut conn: C, state: &ApiState) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    if read.is_err() {
        return;
    }
    let request = String::from_utf8_lossy(&buf);
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (code, kind, body) = match (method, path) {
        ("GET", "/healthz") => match state.catalog.call(|c| c.syncs().map(|s| s.len())).await {
            Ok(_) => (200, "text/plain", "ok\n".to_string()),
            Err(e) => (
                503,
                "text/plain",
                format!("catalog unreadable: {}\n", crate::pg::error::render(&e)),
            ),
        },
        ("GET", "/readyz") => match state.catalog.call(not_ready).await {
            Ok(failed) if failed.is_empty() => (200, "text/plain", "ready\n".to_string()),
            Ok(failed) => (503, "text/plain", failed.join("\n") + "\n"),
            Err(e) => (
                503,
                "text/plain",
                format!("catalog unreadable: {}\n", crate::pg::error::render(&e)),
            ),
        },
        ("GET", "/metrics") => match &state.metrics {
            Some(m) => {
                metrics::server_connections();
                (200, "text/plain; version=0.0.4", m.render())
            }
            None => (
                503,
                "text/plain",
                "metrics are recorded by another daemon in this process\n".into(),
            ),
        },
        ("GET", "/status") => {
            let statuses = state
                .catalog
                .call(|c| -> Result<Vec<StatusReport>, crate::catalog::CatalogError> {
                    c.syncs()?
                        .into_iter()
                        .map(|s| {
                            let status = c.status(&s.name)?;
                            Ok(StatusReport::new(s.name, status))
                        })
                        .collect()
                })
                .await;
            match statuses {
                Ok(v) => (
                    200,
                    "application/json",
                    serde_json::to_string(&v).expect("status serializes"),
                ),
                Err(e) => (503, "text/plain", crate::pg::error::render(&e)),
            }
        }
        (_, _) => (
            404,
            "text/plain",
            "not found: /healthz, /readyz, /metrics, /status\n".into(),
        ),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes()).await;
    let _ = conn.write_all(body.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// Why the daemon is not ready: one line per sync that is not paused and has failed
/// (it waits for the operator). A sync retrying after a transient error is ready:
/// the daemon is doing what it can, and a restarted pod would do the same.
fn not_ready(c: &mut crate::catalog::Catalog) -> Result<Vec<String>, crate::catalog::CatalogError> {
    let mut failed = Vec::new();
    for s in c.syncs()?.into_iter().filter(|s| !s.paused) {
        let status = c.status(&s.name)?;
        if status.state == crate::catalog::SyncState::Failed {
            let error = status.last_error.unwrap_or_default();
            failed.push(format!("sync '{}' failed: {error}", s.name));
        }
    }
    Ok(failed)
}

/// Asks a running daemon's `/healthz`; `Err` says why it could not be reached.
pub async fn probe(listen: &Listen) -> Result<(), String> {
    let request = b"GET /healthz HTTP/1.1\r\nHost: belt\r\nConnection: close\r\n\r\n";
    let answer = tokio::time::timeout(Duration::from_secs(2), async {
        let mut out = Vec::new();
        match listen {
            Listen::Tcp(addr) => {
                let mut c = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| e.to_string())?;
                c.write_all(request).await.map_err(|e| e.to_string())?;
                c.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
            }
            Listen::Unix(path) => {
                let mut c = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| e.to_string())?;
                c.write_all(request).await.map_err(|e| e.to_string())?;
                c.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
            }
        }
        Ok::<_, String>(out)
    })
    .await
    .map_err(|_| "no answer within 2s".to_string())??;
    let text = String::from_utf8_lossy(&answer);
    if text.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(text.lines().next().unwrap_or("no answer").to_string())
    }
}
