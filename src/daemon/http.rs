//! The daemon's optional HTTP endpoints (`[http] listen`): /healthz for a
//! load balancer or systemd watchdog script, /metrics for Prometheus.
//!
//! Owns the routes and what "healthy" means. It reads the journal and
//! writes only its health probe row; it never changes tracking state.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use serde::Serialize;

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

/// Binds `listen` and serves until `shutdown` resolves.
pub async fn serve(
    listen: SocketAddr,
    journal: Journal,
    postgres_configured: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("key `http.listen`: cannot listen on {listen}"))?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state((journal, postgres_configured));
    tracing::info!(%listen, "serving /healthz and /metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "the health and metrics server stopped");
        }
    }))
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
