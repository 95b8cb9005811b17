//! The daemon's alerts: delivers the journal's undelivered alerts to each
//! configured receiver (`alerts.webhook_url`, `alerts.slack_webhook_url`)
//! with exponential backoff, and raises the time-based one itself (sync
//! failing for longer than `alerts.sync_lag`).
//!
//! Delivery is at least once with a stable id: a delivery is journaled only
//! after the receiver answered 2xx, so a crash between its answer and the
//! journal sends that alert again, with the same id (header
//! `X-Chronicle-Alert-Id` and the body's `id`). For a receiver that
//! deduplicates on the id, that is exactly once. Slack's incoming webhooks
//! do not deduplicate: such a repeat shows there twice.
//!
//! Owns the HTTP side and the lag check; what an alert is, and its
//! journaling, is `journal::alerts`'. A receiver's URL is a secret: it is
//! never logged, and errors are stripped of it.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::journal::{Alert, AlertKind, Journal, NewAlert};
use crate::settings::{AlertSettings, Receiver};

/// How often undelivered alerts are looked for (and sync lag checked).
const TICK: Duration = Duration::from_secs(1);

/// Longest wait between two tries of one alert at one receiver.
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// Alerts sent per tick at most: a backlog drains in order, a tick at a
/// time, without one scrape of the table growing with it.
const BATCH: usize = 100;

/// What the loop needs beyond the journal.
pub struct Deliverer {
    pub settings: AlertSettings,
    /// When the daemon started: the lag of a sync that never succeeded
    /// counts from here.
    pub started: DateTime<Utc>,
    /// Whether Postgres is configured (else there is no sync to lag).
    pub postgres: bool,
    pub journal_id: String,
}

/// Runs until `shutdown` resolves. A send cut by the stop is simply sent
/// again by the next daemon (it was not journaled as delivered).
pub async fn run(journal: Journal, deliverer: Deliverer, shutdown: impl Future<Output = ()>) {
    let http = crate::amc::client::http_client();
    let mut down = HashMap::new();
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        if deliverer.postgres
            && let Err(e) = check_sync_lag(&journal, &deliverer, Utc::now())
        {
            tracing::warn!(error = %e, "cannot check how long sync has been failing");
        }
        if let Err(e) = deliver_due(&journal, &deliverer, &http, &mut down).await {
            tracing::warn!(error = %e, "cannot read the alerts to deliver");
        }
    }
}

/// Raises `sync_lag` once per episode: the cause is the last success (or
/// the daemon's start, before any), so a new alert comes only after sync
/// succeeded and then failed for long again.
fn check_sync_lag(
    journal: &Journal,
    deliverer: &Deliverer,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let health = journal.sync_health()?;
    if health.last_error.is_none() {
        return Ok(());
    }
    let since = health
        .last_success_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(deliverer.started, |t| t.with_timezone(&Utc));
    let lag = (now - since).to_std().unwrap_or_default();
    if lag <= deliverer.settings.sync_lag {
        return Ok(());
    }
    let cause = match &health.last_success_at {
        Some(at) => format!("since {at}"),
        None => format!("never, daemon started {}", deliverer.started.to_rfc3339()),
    };
    let error = health.last_error.unwrap_or_default();
    journal.raise_alert(&NewAlert {
        kind: AlertKind::SyncLag,
        cause,
        subject: "sync".to_owned(),
        summary: format!(
            "sync to Postgres has failed for {} (longer than alerts.sync_lag); the journal keeps every change: {error}",
            humantime::format_duration(Duration::from_secs(lag.as_secs()))
        ),
        details: json!({
            "last_success_at": health.last_success_at,
            "last_attempt_at": health.last_attempt_at,
            "lag_seconds": lag.as_secs(),
            "error": error,
        }),
    })?;
    Ok(())
}

/// A receiver that failed: how often in a row, and when to try it again.
/// While it is down, one try per backoff step reaches it, not one per
/// waiting alert (a receiver that hangs would otherwise hold every tick
/// for `alerts.timeout` times the backlog).
type Down = HashMap<Receiver, (i64, tokio::time::Instant)>;

/// Sends every alert due now to each receiver still missing it.
async fn deliver_due(
    journal: &Journal,
    deliverer: &Deliverer,
    http: &reqwest::Client,
    down: &mut Down,
) -> anyhow::Result<()> {
    let receivers = deliverer.settings.receivers();
    if receivers.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = receivers.iter().map(|(r, _)| r.as_str()).collect();
    for (alert, missing) in journal.alerts_due(&names, Utc::now(), BATCH)? {
        for (receiver, url) in receivers
            .iter()
            .filter(|(r, _)| missing.iter().any(|m| m == r.as_str()))
        {
            if down
                .get(receiver)
                .is_some_and(|(_, until)| tokio::time::Instant::now() < *until)
            {
                continue;
            }
            match send(http, *receiver, url, &alert, deliverer).await {
                Ok(status) => {
                    down.remove(receiver);
                    journal.record_alert_delivered(alert.id, receiver.as_str(), status, &names)?;
                    tracing::info!(alert = %alert.id, kind = %alert.kind, receiver = receiver.as_str(), "alert delivered");
                }
                Err(why) => {
                    let tries = alert
                        .deliveries
                        .iter()
                        .find(|d| d.receiver == receiver.as_str())
                        .map_or(0, |d| d.tries);
                    let wait = backoff(tries);
                    let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                    journal.record_alert_failed(alert.id, receiver.as_str(), &why, next)?;
                    let failures = down.get(receiver).map_or(0, |(n, _)| *n);
                    let pause = backoff(failures);
                    down.insert(
                        *receiver,
                        (failures + 1, tokio::time::Instant::now() + pause),
                    );
                    tracing::warn!(alert = %alert.id, receiver = receiver.as_str(), error = %why, retry_in = ?pause, "alert not delivered; it waits in the journal");
                }
            }
        }
    }
    Ok(())
}

/// 1 s, 2 s, 4 s ... up to five minutes after the `tries`-th failure.
fn backoff(tries: i64) -> Duration {
    let doubling = 2u64.saturating_pow(tries.clamp(0, 30) as u32);
    Duration::from_secs(doubling).min(BACKOFF_CAP)
}

/// The body a receiver gets.
fn body(receiver: Receiver, alert: &Alert, deliverer: &Deliverer) -> serde_json::Value {
    match receiver {
        Receiver::Webhook => json!({
            "id": alert.id,
            "kind": alert.kind,
            "subject": alert.subject,
            "summary": alert.summary,
            "details": alert.details,
            "raised_at": alert.raised_at,
            "journal_id": deliverer.journal_id,
            "source": "chronicle",
        }),
        // Slack's incoming webhooks take `text` (mrkdwn).
        Receiver::Slack => json!({
            "text": format!("chronicle alert `{}`: {} (id {})", alert.kind, alert.summary, alert.id),
        }),
    }
}

/// One try; `Ok(status)` on 2xx. The error never holds the URL.
async fn send(
    http: &reqwest::Client,
    receiver: Receiver,
    url: &str,
    alert: &Alert,
    deliverer: &Deliverer,
) -> Result<u16, String> {
    let answer = http
        .post(url)
        .timeout(deliverer.settings.timeout)
        .header("X-Chronicle-Alert-Id", alert.id.to_string())
        .header("Idempotency-Key", alert.id.to_string())
        .json(&body(receiver, alert, deliverer))
        .send()
        .await
        .map_err(|e| format!("{} receiver: {}", receiver.as_str(), e.without_url()))?;
    let status = answer.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(format!(
            "{} receiver answered HTTP {}",
            receiver.as_str(),
            status.as_u16()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), BACKOFF_CAP);
    }
}
