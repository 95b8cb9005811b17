//! Alerts: what an operator must hear of (a week failed after its retries,
//! a row quarantined, sync failing too long, credentials refused, a firing
//! skipped, an attempt left unresolved), kept in the journal's own outbox
//! until every configured receiver answered 2xx.
//!
//! Owns the `alerts` and `alert_deliveries` tables and the two events
//! (`alert.raised`, `alert.delivered`). An alert is raised inside the
//! transaction of the change that causes it (`raise`), so none is lost in a
//! crash; its id is UUIDv5 of the cause, so the same cause never raises two
//! and a receiver can deduplicate. Delivery (HTTP) is the daemon's.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::change::Change;
use super::events::{AlertDelivered, AlertRaised, Event};
use super::sql::{parse_timestamp, timestamp};
use super::{Journal, Result};

/// Alert ids are UUIDv5 of their cause under this namespace.
const NAMESPACE: Uuid = Uuid::from_u128(0x6368_726f_6e69_636c_6561_6c65_7274_7331);

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A week failed after its retries.
    WeekFailed,
    /// Postgres refused a row; it waits in quarantine.
    RowQuarantined,
    /// Sync has failed for longer than `alerts.sync_lag`.
    SyncLag,
    /// Login with Amazon refused the credentials.
    CredentialsRefused,
    /// A firing did not run (the collection was still being worked on).
    FiringSkipped,
    /// A run had to leave an attempt open.
    AttemptUnresolved,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::WeekFailed => "week_failed",
            AlertKind::RowQuarantined => "row_quarantined",
            AlertKind::SyncLag => "sync_lag",
            AlertKind::CredentialsRefused => "credentials_refused",
            AlertKind::FiringSkipped => "firing_skipped",
            AlertKind::AttemptUnresolved => "attempt_unresolved",
        }
    }
}

/// An alert about to be raised.
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub kind: AlertKind,
    /// What makes it this alert and no other (e.g. the attempt id): the
    /// same cause is one alert however often it is raised.
    pub cause: String,
    /// The row it is about (a week, attempt, schedule, `sync`).
    pub subject: String,
    /// One line for people (and Slack's `text`).
    pub summary: String,
    /// Everything else, as JSON.
    pub details: Value,
}

impl NewAlert {
    pub fn id(&self) -> Uuid {
        Uuid::new_v5(
            &NAMESPACE,
            format!("{}:{}", self.kind.as_str(), self.cause).as_bytes(),
        )
    }
}

/// An alert and the receivers it still has to reach.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: Uuid,
    pub kind: String,
    pub subject: String,
    pub summary: String,
    pub details: Value,
    pub raised_at: String,
    /// Set once every configured receiver answered 2xx.
    pub delivered_at: Option<String>,
    /// Per receiver: tries, last error, when it answered 2xx.
    pub deliveries: Vec<Delivery>,
}

/// One receiver's side of one alert.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// `webhook` or `slack`.
    pub receiver: String,
    pub tries: i64,
    pub last_error: Option<String>,
    pub next_try_at: Option<String>,
    pub delivered_at: Option<String>,
}

/// Inserts the alert (once per cause) and journals `alert.raised`, inside
/// the caller's transaction. Returns its id when it was new.
pub(super) fn raise(c: &Change<'_>, alert: &NewAlert) -> rusqlite::Result<Option<Uuid>> {
    let id = alert.id();
    let inserted = c.execute(
        "INSERT INTO alerts (id, kind, subject, summary, details, raised_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
        params![
            id.to_string(),
            alert.kind.as_str(),
            alert.subject,
            alert.summary,
            alert.details.to_string(),
            c.at
        ],
    )?;
    if inserted == 0 {
        return Ok(None);
    }
    c.record(
        &alert.subject,
        &Event::AlertRaised(AlertRaised {
            alert: id,
            kind: alert.kind.as_str().to_owned(),
            summary: alert.summary.clone(),
        }),
    )?;
    Ok(Some(id))
}

impl Journal {
    /// Raises an alert of its own (the daemon's time-based checks: sync
    /// lag, refused credentials). `None` when its cause already raised one.
    pub fn raise_alert(&self, alert: &NewAlert) -> Result<Option<Uuid>> {
        self.change(|c| raise(c, alert))
    }

    /// Alerts some receiver of `receivers` has not answered 2xx to and
    /// may be tried now, oldest first, each with the receivers still
    /// missing. Reads only undelivered alerts (a partial index).
    pub fn alerts_due(
        &self,
        receivers: &[&str],
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(Alert, Vec<String>)>> {
        // With no receiver, alerts wait for one: none is settled.
        if receivers.is_empty() {
            return Ok(Vec::new());
        }
        let alerts = self.alert_rows(
            "WHERE delivered_at IS NULL ORDER BY raised_at, id LIMIT ?1",
            limit,
        )?;
        let mut due = Vec::new();
        let mut settled = Vec::new();
        for alert in alerts {
            // Every receiver configured now has it (one that had been
            // configured too was removed since): delivered.
            if receivers.iter().all(|receiver| {
                alert
                    .deliveries
                    .iter()
                    .any(|d| d.receiver == *receiver && d.delivered_at.is_some())
            }) {
                settled.push(alert.id.to_string());
                continue;
            }
            let missing: Vec<String> = receivers
                .iter()
                .filter(|receiver| {
                    match alert.deliveries.iter().find(|d| d.receiver == **receiver) {
                        None => true,
                        Some(d) => {
                            d.delivered_at.is_none()
                                && d.next_try_at
                                    .as_deref()
                                    .and_then(parse_timestamp)
                                    .is_none_or(|at| at <= now)
                        }
                    }
                })
                .map(|r| (*r).to_owned())
                .collect();
            if !missing.is_empty() {
                due.push((alert, missing));
            }
        }
        if !settled.is_empty() {
            let connection = self.lock();
            connection
                .execute(
                    "UPDATE alerts SET delivered_at = ?1
                     WHERE id IN (SELECT value FROM json_each(?2))",
                    params![
                        timestamp(now),
                        serde_json::to_string(&settled).unwrap_or_default()
                    ],
                )
                .map_err(|e| self.sqlite(e))?;
        }
        Ok(due)
    }

    /// Journals that `receiver` answered `status` (2xx) to `alert`: the
    /// `alert.delivered` event, and the alert delivered once all of
    /// `receivers` have it. Only called after the answer arrived, so a
    /// crash before it sends the alert again, with the same id.
    pub fn record_alert_delivered(
        &self,
        alert: Uuid,
        receiver: &str,
        status: u16,
        receivers: &[&str],
    ) -> Result<()> {
        let id = alert.to_string();
        self.change(|c| {
            let subject: String = c.tx.query_row(
                "SELECT subject FROM alerts WHERE id = ?1",
                [&id],
                |row| row.get(0),
            )?;
            c.record(
                &subject,
                &Event::AlertDelivered(AlertDelivered {
                    alert,
                    receiver: receiver.to_owned(),
                    status,
                }),
            )?;
            c.execute(
                "INSERT INTO alert_deliveries (alert_id, receiver, tries, delivered_at)
                 VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (alert_id, receiver) DO UPDATE SET
                     tries = tries + 1, delivered_at = excluded.delivered_at,
                     last_error = NULL, next_try_at = NULL",
                params![id, receiver, c.at],
            )?;
            let delivered: i64 = c.tx.query_row(
                "SELECT count(*) FROM alert_deliveries d JOIN json_each(?2) r ON r.value = d.receiver
                 WHERE d.alert_id = ?1 AND d.delivered_at IS NOT NULL",
                params![id, serde_json::to_string(receivers).unwrap_or_default()],
                |row| row.get(0),
            )?;
            if delivered as usize >= receivers.len() {
                c.execute(
                    "UPDATE alerts SET delivered_at = ?1 WHERE id = ?2",
                    params![c.at, id],
                )?;
            }
            Ok(())
        })
    }

    /// Notes a failed try (no event: nothing was delivered) and when the
    /// next one may be made.
    pub fn record_alert_failed(
        &self,
        alert: Uuid,
        receiver: &str,
        error: &str,
        next_try_at: DateTime<Utc>,
    ) -> Result<i64> {
        let connection = self.lock();
        connection
            .query_row(
                "INSERT INTO alert_deliveries (alert_id, receiver, tries, last_error, next_try_at)
                 VALUES (?1, ?2, 1, ?3, ?4)
                 ON CONFLICT (alert_id, receiver) DO UPDATE SET
                     tries = tries + 1, last_error = excluded.last_error,
                     next_try_at = excluded.next_try_at
                 RETURNING tries",
                params![alert.to_string(), receiver, error, timestamp(next_try_at)],
                |row| row.get(0),
            )
            .map_err(|e| self.sqlite(e))
    }

    /// The newest `limit` alerts with their delivery state (`chronicle
    /// alerts`).
    pub fn alerts(&self, limit: usize) -> Result<Vec<Alert>> {
        self.alert_rows("ORDER BY raised_at DESC, id DESC LIMIT ?1", limit)
    }

    /// Alerts waiting for some receiver.
    pub fn undelivered_alerts(&self) -> Result<i64> {
        let connection = self.lock();
        connection
            .query_row(
                "SELECT count(*) FROM alerts WHERE delivered_at IS NULL",
                [],
                |row| row.get(0),
            )
            .map_err(|e| self.sqlite(e))
    }

    fn alert_rows(&self, tail: &str, limit: usize) -> Result<Vec<Alert>> {
        let connection = self.lock();
        let sqlite = |e| self.sqlite(e);
        let mut statement = connection
            .prepare(&format!(
                "SELECT id, kind, subject, summary, details, raised_at, delivered_at
                 FROM alerts {tail}"
            ))
            .map_err(sqlite)?;
        let mut deliveries = connection
            .prepare_cached(
                "SELECT receiver, tries, last_error, next_try_at, delivered_at
                 FROM alert_deliveries WHERE alert_id = ?1 ORDER BY receiver",
            )
            .map_err(sqlite)?;
        let rows = statement
            .query_map([limit as i64], |row| {
                let id: String = row.get(0)?;
                let details: String = row.get(4)?;
                Ok(Alert {
                    id: Uuid::parse_str(&id).unwrap_or_default(),
                    kind: row.get(1)?,
                    subject: row.get(2)?,
                    summary: row.get(3)?,
                    details: serde_json::from_str(&details).unwrap_or(Value::Null),
                    raised_at: row.get(5)?,
                    delivered_at: row.get(6)?,
                    deliveries: Vec::new(),
                })
            })
            .map_err(sqlite)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sqlite)?;
        let mut alerts = rows;
        for alert in &mut alerts {
            alert.deliveries = deliveries
                .query_map([alert.id.to_string()], |row| {
                    Ok(Delivery {
                        receiver: row.get(0)?,
                        tries: row.get(1)?,
                        last_error: row.get(2)?,
                        next_try_at: row.get(3)?,
                        delivered_at: row.get(4)?,
                    })
                })
                .map_err(sqlite)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sqlite)?;
        }
        Ok(alerts)
    }
}

/// The schedule and start of a week, for an alert's summary.
pub(super) fn schedule_and_week(
    c: &Change<'_>,
    week_id: Uuid,
) -> rusqlite::Result<(String, String)> {
    c.tx.query_row(
        "SELECT c.name, w.week_start FROM weeks w
         JOIN collections c ON c.id = w.collection_id WHERE w.id = ?1",
        [week_id.to_string()],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}
