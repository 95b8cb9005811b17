//! The daemon's optional HTTP endpoints (`[http] listen`): /healthz for a
//! load balancer or systemd watchdog script, /metrics for Prometheus.
//!
//! Owns the routes, what "healthy" means, and the server's connections:
//! each must send its request head within `http.header_read_timeout`, and
//! at a stop every connection gets at most the drain time before it is
//! cut, so a stalled client can hold neither a connection nor the stop.
//! It reads the journal and writes only its health probe row; it never
//! changes tracking state.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::journal::{Journal, SyncHealth};

/// The /healthz body.
#[derive(Debug, Serialize)]
struct Health {
    /// `ok` or `unhealthy`.
    status: &'static str,
    /// The journal took a durable write just now.
    journal_writable: bool,
    /// Why it did not, when it did not.
    journal_error: Option<String>,
    /// Whether the reconciler's last attempt failed; none without Postgres.
    sync_ok: Option<bool>,
    /// Why the reconciler's state could not be read, when it could not.
    sync_read_error: Option<String>,
    /// The reconciler's last attempt, success and error, for the operator.
    sync: Option<SyncHealth>,
}

/// The bounds on what a client can make the server wait for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request head must arrive within this (`http.header_read_timeout`).
    pub header_read: Duration,
    /// After the stop, how long open connections may finish before they
    /// are cut (`scheduler.shutdown_timeout`).
    pub drain: Duration,
}

/// Binds `listen` and serves until `shutdown` resolves, then drains the
/// open connections for at most `limits.drain`.
pub async fn serve(
    listen: SocketAddr,
    journal: Journal,
    postgres_configured: bool,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("key `http.listen`: cannot listen on {listen}"))?;
    tracing::info!(%listen, "serving /healthz and /metrics");
    let app = routes(journal, postgres_configured);
    Ok(tokio::spawn(serve_on(listener, app, limits, shutdown)))
}

fn routes(journal: Journal, postgres_configured: bool) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state((journal, postgres_configured))
}

/// The accept loop and the bounded drain. HTTP/1 only: the endpoints are
/// for scrapers and probes.
async fn serve_on(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let service = TowerToHyperService::new(app.clone());
                    let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                    connections.spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "HTTP connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    // Idle connections close at once; one in a request finishes it; one
    // whose client stalled is what the bound is for.
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            drain = ?limits.drain,
            "HTTP connections still open after the drain were cut"
        );
    }
    connections.shutdown().await;
}

/// 200 when the journal takes writes and the last sync (if Postgres is
/// configured) succeeded; 503 otherwise. Postgres away is unhealthy so an
/// operator hears of it, though nothing is lost meanwhile (I4).
async fn healthz(State((journal, postgres)): State<(Journal, bool)>) -> Response {
    let health = tokio::task::spawn_blocking(move || {
        let probe = journal.probe_write();
        // A sync state the journal cannot read is no proof of health.
        let (sync, sync_read_error) = match postgres.then(|| journal.sync_health()) {
            Some(Ok(sync)) => (Some(sync), None),
            Some(Err(e)) => (None, Some(e.to_string())),
            None => (None, None),
        };
        let sync_ok = match (&sync, &sync_read_error) {
            (_, Some(_)) => Some(false),
            (Some(s), None) => Some(s.last_error.is_none()),
            (None, None) => None,
        };
        let journal_writable = probe.is_ok();
        Health {
            status: if journal_writable && sync_ok != Some(false) {
                "ok"
            } else {
                "unhealthy"
            },
            journal_writable,
            journal_error: probe.err().map(|e| e.to_string()),
            sync_ok,
            sync_read_error,
            sync,
        }
    })
    .await;
    match health {
        Ok(health) => {
            let code = if health.status == "ok" {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (code, axum::Json(health)).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn metrics(State((journal, _)): State<(Journal, bool)>) -> Response {
    let snapshot = tokio::task::spawn_blocking(move || journal.metrics_snapshot(Utc::now())).await;
    match snapshot {
        Ok(Ok(snapshot)) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            crate::daemon::metrics::render(&snapshot),
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Serves a fresh journal on a free port until `stop` fires.
    async fn server(
        limits: Limits,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("journal.db")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve_on(
            listener,
            routes(journal, false),
            limits,
            async move {
                let _ = stopped.await;
            },
        ));
        (address, stop, served, dir)
    }

    /// A client that sends half a request head and then nothing.
    async fn stalled(address: SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost:")
            .await
            .unwrap();
        stream
    }

    /// A whole GET answered: the server has accepted every connection
    /// made before this one (one accept loop, in order).
    async fn answered(address: SocketAddr) {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn a_client_that_stalls_in_its_request_head_is_cut_by_the_header_timeout() {
        let limits = Limits {
            header_read: Duration::from_millis(200),
            drain: Duration::from_secs(30),
        };
        let (address, _stop, _served, _dir) = server(limits).await;
        let mut client = stalled(address).await;
        let mut rest = Vec::new();
        // Closed (an end of file, or a reset) rather than waited on.
        let _closed = tokio::time::timeout(Duration::from_secs(20), client.read_to_end(&mut rest))
            .await
            .expect("the server closes a stalled connection within its header timeout");
    }

    #[tokio::test]
    async fn a_client_that_never_sends_a_request_is_cut_by_the_header_timeout() {
        let limits = Limits {
            header_read: Duration::from_millis(200),
            drain: Duration::from_secs(30),
        };
        let (address, _stop, _served, _dir) = server(limits).await;
        let mut silent = TcpStream::connect(address).await.unwrap();
        let mut rest = Vec::new();
        let _closed = tokio::time::timeout(Duration::from_secs(20), silent.read_to_end(&mut rest))
            .await
            .expect("the server closes a silent connection within its header timeout");
    }

    #[tokio::test]
    async fn the_stop_drains_for_at_most_its_bound_even_with_a_stalled_client() {
        let limits = Limits {
            header_read: Duration::from_secs(3600),
            drain: Duration::from_millis(300),
        };
        let (address, stop, served, _dir) = server(limits).await;
        let _client = stalled(address).await;
        answered(address).await;
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(20), served)
            .await
            .expect("the server stops within its drain bound")
            .unwrap();
    }

    #[tokio::test]
    async fn health_is_503_once_the_last_sync_failed_and_200_after_one_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("journal.db")).unwrap();
        let state = || State((journal.clone(), true));
        assert_eq!(healthz(state()).await.status(), StatusCode::OK);
        journal
            .record_sync(Some("cannot reach Postgres at db:5432"))
            .unwrap();
        assert_eq!(
            healthz(state()).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        // Without Postgres configured, sync state does not count.
        let journal_only = State((journal.clone(), false));
        assert_eq!(healthz(journal_only).await.status(), StatusCode::OK);
        journal.record_sync(None).unwrap();
        assert_eq!(healthz(state()).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn health_is_503_when_the_journal_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let journal = Journal::open(&path).unwrap();
        // A read-only disk is hard to make in a test; a trigger makes the
        // probe's write fail the same way.
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute_batch(
                "CREATE TRIGGER no_probe BEFORE INSERT ON health_probe
                 BEGIN SELECT RAISE(ABORT, 'disk is read-only'); END;",
            )
            .unwrap();
        let response = healthz(State((journal, false))).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn health_is_503_when_the_sync_state_cannot_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let journal = Journal::open(&path).unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("DELETE FROM sync_state").unwrap();
        let response = healthz(State((journal, true))).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
