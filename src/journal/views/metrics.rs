//! What /metrics exposes of the journal, read in one go and in constant
//! time on a large journal: V7's and V9's running totals, the small
//! tables (quarantine, unresolved attempts, schedule state, undelivered
//! alerts) and index lookups, never a count over the history.
//!
//! Owns the query; the text format is `daemon::metrics`'.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::super::sql::parse_timestamp;
use super::super::{Journal, Result};

/// The numbers /metrics exposes, read in one go.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    /// Attempts by state (`intent`, `submitted`, `succeeded`, ...).
    pub executions_by_state: BTreeMap<String, i64>,
    /// Weeks by status, every status present even at zero.
    pub weeks_by_status: BTreeMap<String, i64>,
    /// Journal changes Postgres has not acknowledged yet.
    pub outbox_pending: i64,
    /// Age of the oldest outbox entry; none when empty.
    pub outbox_oldest_age_seconds: Option<f64>,
    /// Since the last successful sync; none before the first.
    pub sync_lag_seconds: Option<f64>,
    /// Completed weeks: the population ratio's denominator.
    pub completed_weeks: i64,
    /// Of those, the ones whose AMC execution id is recorded.
    pub completed_with_execution_id: i64,
    /// Rows Postgres refused, waiting in quarantine.
    pub quarantined: i64,
    /// Open attempts whose latest event is `attempt.unresolved`.
    pub unresolved_attempts: i64,
    /// Alerts some configured receiver has not answered 2xx to yet.
    pub undelivered_alerts: i64,
    /// Per schedule the daemon has decided about.
    pub schedules: BTreeMap<String, ScheduleFigures>,
    /// Per collection (schedule name): weeks by status, every status
    /// present even at zero.
    pub weeks_by_schedule: BTreeMap<String, BTreeMap<String, i64>>,
}

/// One schedule's figures from its `schedule_state` row.
#[derive(Debug, Clone, Default)]
pub struct ScheduleFigures {
    /// Firings skipped (overlap, pause) since the journal began.
    pub skipped_firings: i64,
    /// When a run of it last completed (Unix seconds); none before.
    pub last_success: Option<f64>,
}

impl Journal {
    pub fn metrics_snapshot(&self, now: DateTime<Utc>) -> Result<MetricsSnapshot> {
        let connection = self.lock();
        let sqlite = |e| self.sqlite(e);
        let age = |at: Option<String>| {
            at.as_deref()
                .and_then(parse_timestamp)
                .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
        };
        let mut snapshot = MetricsSnapshot::default();
        for state in ["intent", "submitted", "succeeded", "failed", "abandoned"] {
            snapshot.executions_by_state.insert(state.to_owned(), 0);
        }
        for status in ["pending", "running", "completed", "failed"] {
            snapshot.weeks_by_status.insert(status.to_owned(), 0);
        }
        let counts = |sql: &str, into: &mut BTreeMap<String, i64>| -> rusqlite::Result<()> {
            let mut statement = connection.prepare(sql)?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            for row in rows {
                let (key, count): (String, i64) = row?;
                into.insert(key, count);
            }
            Ok(())
        };
        // V9's running totals: a count of every attempt held the journal
        // for a scan of the history at each scrape.
        counts(
            "SELECT state, attempts FROM attempt_totals",
            &mut snapshot.executions_by_state,
        )
        .map_err(sqlite)?;
        // V7's running totals, not a count over every week of the history:
        // a scrape every few seconds must not hold the journal for a scan.
        counts(
            "SELECT status, sum(weeks) FROM week_totals GROUP BY status",
            &mut snapshot.weeks_by_status,
        )
        .map_err(sqlite)?;
        let (pending, oldest): (i64, Option<String>) = connection
            .query_row("SELECT count(*), min(queued_at) FROM outbox", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(sqlite)?;
        snapshot.outbox_pending = pending;
        snapshot.outbox_oldest_age_seconds = age(oldest);
        let last_success: Option<String> = connection
            .query_row(
                "SELECT last_success_at FROM sync_state WHERE id = 1",
                [],
                |row| row.get(0),
            )
            .map_err(sqlite)?;
        snapshot.sync_lag_seconds = age(last_success);
        // Counted from the other side: the few attempts without an AMC id
        // (intents, abandoned) and whether one is a completed week's current
        // attempt, through V10's partial index that holds them (named:
        // SQLite otherwise scans the weeks); a join over every
        // completed week held the journal for 0.2 s a scrape at 104,000
        // weeks. A week is completed only by `record_succeeded`, which
        // always names its attempt.
        let lacking: i64 = connection
            .query_row(
                "SELECT count(*) FROM attempts a INDEXED BY attempts_open
                 JOIN weeks w ON w.id = a.week_id AND w.attempt_id = a.id
                 WHERE a.amc_execution_id IS NULL AND w.status = 'completed'",
                [],
                |row| row.get(0),
            )
            .map_err(sqlite)?;
        snapshot.completed_weeks = snapshot
            .weeks_by_status
            .get("completed")
            .copied()
            .unwrap_or(0);
        snapshot.completed_with_execution_id = snapshot.completed_weeks - lacking;
        let small = |sql: &str| connection.query_row(sql, [], |row| row.get::<_, i64>(0));
        snapshot.quarantined = small("SELECT count(*) FROM quarantine").map_err(sqlite)?;
        snapshot.unresolved_attempts =
            small("SELECT count(*) FROM unresolved_attempts").map_err(sqlite)?;
        snapshot.undelivered_alerts =
            small("SELECT count(*) FROM alerts WHERE delivered_at IS NULL").map_err(sqlite)?;
        let mut statement = connection
            .prepare("SELECT name, skipped_firings, last_success_at FROM schedule_state")
            .map_err(sqlite)?;
        let rows = statement
            .query_map([], |row| {
                let at: Option<String> = row.get(2)?;
                Ok((
                    row.get::<_, String>(0)?,
                    ScheduleFigures {
                        skipped_firings: row.get(1)?,
                        last_success: at
                            .as_deref()
                            .and_then(parse_timestamp)
                            .map(|t| t.timestamp_millis() as f64 / 1000.0),
                    },
                ))
            })
            .map_err(sqlite)?;
        for row in rows {
            let (name, figures) = row.map_err(sqlite)?;
            snapshot.schedules.insert(name, figures);
        }
        // One row per collection and status: the totals, not the weeks.
        let mut statement = connection
            .prepare(
                "SELECT c.name, t.status, t.weeks FROM week_totals t
                 JOIN collections c ON c.id = t.collection_id",
            )
            .map_err(sqlite)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(sqlite)?;
        for row in rows {
            let (name, status, weeks) = row.map_err(sqlite)?;
            let by_status = snapshot.weeks_by_schedule.entry(name).or_insert_with(|| {
                ["pending", "running", "completed", "failed"]
                    .into_iter()
                    .map(|s| (s.to_owned(), 0))
                    .collect()
            });
            by_status.insert(status, weeks);
        }
        Ok(snapshot)
    }
}
