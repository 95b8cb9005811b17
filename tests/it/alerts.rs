//! Alerts that are never lost and never sent twice (issue 17): raised in
//! the journal with the change that causes them, delivered by the real
//! daemon to a local HTTP receiver that is down for a while, then up,
//! across a `kill -9` of the daemon; every alert arrives exactly once by
//! its id, in chronicle's JSON and in Slack's format, and the receivers'
//! URLs (which hold tokens) never reach the logs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;

use crate::daemon::{free_port, get, start};
use crate::helpers::{eventually, quick_sim, schedule, spawn_app, text};
use crate::operations::query;

/// What the receiver got: (path, `X-Chronicle-Alert-Id`, body).
type Received = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

/// A webhook and a Slack-like receiver on `port`, answering 200.
async fn receiver(port: u16, received: Received) -> tokio::task::JoinHandle<()> {
    let record = |path: &'static str, received: Received| {
        move |headers: HeaderMap, body: String| async move {
            let id = headers
                .get("x-chronicle-alert-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
            received.lock().unwrap().push((path.to_owned(), id, body));
            "ok"
        }
    };
    let app = Router::new()
        .route("/hook/{token}", post(record("webhook", received.clone())))
        .route("/slack", post(record("slack", received)));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_then_up_gets_every_alert_exactly_once_across_a_kill_9_of_the_daemon() {
    // Every execution fails: two weeks fail after their retries.
    let mut sim = quick_sim();
    sim.failure_rate = 1.0;
    let app = spawn_app(sim, &schedule(2, 1)).await;
    let journal = app.journal_path();
    let backfill = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(backfill.status.code(), Some(1), "{}", text(&backfill));
    assert_eq!(
        query::<i64>(
            &journal,
            "SELECT count(*) FROM alerts WHERE kind = 'week_failed'"
        ),
        2,
        "one alert per week that failed after its retries, raised with the failure"
    );

    // The daemon: Postgres now away (sync fails for longer than
    // alerts.sync_lag), the receiver not listening yet.
    let port = free_port();
    let http = free_port();
    let original = std::fs::read_to_string(&app.config_path).unwrap();
    let config = original.clone();
    let dead = format!("127.0.0.1:{}", free_port());
    let config = config.replace(
        &app.database_url[..app.database_url.rfind('/').unwrap()],
        &format!("postgres://nobody@{dead}"),
    );
    app.set_config(&format!(
        "{config}\n[alerts]\nwebhook_url = \"http://127.0.0.1:{port}/hook/SECRET-TOKEN-1234\"\nslack_webhook_url = \"http://127.0.0.1:{port}/slack\"\nsync_lag = \"1s\"\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n"
    ));
    let (mut daemon, lines) = start(&app, &["--log-format", "json"]);
    eventually("the sync-lag alert", Duration::from_secs(60), || async {
        query::<i64>(
            &journal,
            "SELECT count(*) FROM alerts WHERE kind = 'sync_lag'",
        ) == 1
    })
    .await;
    // Down: each receiver is probed with backoff (not once per waiting
    // alert), each failed try journaled with its error.
    eventually(
        "failed tries journaled at both receivers",
        Duration::from_secs(60),
        || async {
            query::<i64>(
                &journal,
                "SELECT count(DISTINCT receiver) FROM alert_deliveries
                 WHERE tries > 0 AND delivered_at IS NULL AND last_error LIKE '%receiver%'",
            ) == 2
        },
    )
    .await;
    let (code, metrics) = get(http, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("chronicle_alerts_undelivered 3\n"),
        "{metrics}"
    );
    let listed = app.chronicle(&["alerts"]).await;
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("webhook: "),
        "{}",
        text(&listed)
    );
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();

    // Up now; a new daemon delivers what the journal kept.
    let received: Received = Arc::default();
    let _receiver = receiver(port, received.clone()).await;
    let (daemon, more_lines) = start(&app, &["--log-format", "json"]);
    eventually("every alert delivered", Duration::from_secs(60), || async {
        query::<i64>(
            &journal,
            "SELECT count(*) FROM alerts WHERE delivered_at IS NULL",
        ) == 0
    })
    .await;
    // Time for a second send, were one to happen.
    tokio::time::sleep(Duration::from_secs(2)).await;
    unsafe { libc::kill(daemon.id().unwrap() as i32, libc::SIGTERM) };
    let mut daemon = daemon;
    daemon.wait().await.unwrap();

    let ids: Vec<String> = {
        let connection = rusqlite::Connection::open(&journal).unwrap();
        let mut statement = connection
            .prepare("SELECT id FROM alerts ORDER BY id")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        ids.len(),
        3,
        "two weeks failed, one sync lag: no alert raised twice"
    );
    let got = received.lock().unwrap().clone();
    for path in ["webhook", "slack"] {
        let mut seen: Vec<String> = got
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, id, _)| id.clone())
            .collect();
        seen.sort();
        assert_eq!(seen, ids, "{path}: every alert exactly once: {got:?}");
    }
    for (path, id, body) in &got {
        match path.as_str() {
            "webhook" => {
                assert_eq!(body["id"], id.as_str(), "{body}");
                assert!(body["summary"].as_str().is_some(), "{body}");
                assert!(
                    ["week_failed", "sync_lag"].contains(&body["kind"].as_str().unwrap()),
                    "{body}"
                );
            }
            _ => assert!(
                body["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(id.as_str())),
                "Slack's format: {body}"
            ),
        }
    }
    let delivered = query::<i64>(
        &journal,
        "SELECT count(*) FROM events WHERE kind = 'alert.delivered'",
    );
    assert_eq!(delivered, 6, "each delivery journaled once");
    let listed = app.chronicle(&["alerts", "--json"]).await;
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["delivered_at"].is_string()),
        "{listed}"
    );
    let logs = [
        lines.lock().unwrap().clone(),
        more_lines.lock().unwrap().clone(),
    ]
    .concat();
    assert!(
        logs.iter().any(|l| l.contains("alert not delivered")),
        "the failed tries are logged"
    );
    assert!(
        !logs.iter().any(|l| l.contains("SECRET-TOKEN")),
        "the webhook URL is a secret: {logs:?}"
    );

    // Postgres back: a journal that raised and delivered alerts syncs and
    // audits clean against its log and Postgres.
    app.set_config(&original);
    let sync = app.chronicle(&["sync"]).await;
    assert_eq!(sync.status.code(), Some(0), "{}", text(&sync));
    let audit = app.chronicle(&["audit"]).await;
    assert_eq!(audit.status.code(), Some(0), "{}", text(&audit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_login_with_amazon_refuses_raise_one_alert_per_daemon_start() {
    let every_second = schedule(1, 0).replace("0 0 6 * * Mon", "* * * * * *");
    let app = spawn_app(quick_sim(), &every_second).await;
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    let (_, secret, _) = app.sim.simulator.credentials();
    app.set_config(&config.replace(
        &format!("client_secret = \"{secret}\""),
        "client_secret = \"CS-wrong-secret-1234\"",
    ));
    let journal = app.journal_path();
    for start_number in 1..=2 {
        let (mut daemon, lines) = start(&app, &[]);
        let failed_before = if start_number == 1 { 0 } else { 3 };
        let failed = || {
            journal.exists()
                && rusqlite::Connection::open(&journal)
                    .and_then(|c| {
                        c.query_row(
                            "SELECT count(*) FROM events WHERE kind = 'schedule.run_finished'
                             AND json_extract(payload, '$.outcome') = 'failed'",
                            [],
                            |row| row.get::<_, i64>(0),
                        )
                    })
                    .is_ok_and(|failed| failed >= failed_before + 3)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !failed() {
            assert!(
                std::time::Instant::now() < deadline,
                "runs failing on the credentials: {}",
                lines.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        unsafe { libc::kill(daemon.id().unwrap() as i32, libc::SIGTERM) };
        daemon.wait().await.unwrap();
        let alerts: i64 = query(
            &journal,
            "SELECT count(*) FROM alerts WHERE kind = 'credentials_refused'",
        );
        assert_eq!(
            alerts, start_number,
            "one per daemon start, not one per run"
        );
    }
    let summary: String = query(
        &journal,
        "SELECT summary FROM alerts WHERE kind = 'credentials_refused' LIMIT 1",
    );
    assert!(summary.contains("Login with Amazon refused"), "{summary}");
    assert!(!summary.contains("CS-wrong-secret-1234"), "{summary}");
}
