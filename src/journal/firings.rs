//! The scheduler's record: every firing decision with its reason, each
//! collection run's outcome, pauses and resumes, schedule reloads; and the
//! reads the daemon, `chronicle schedules`, /healthz and /metrics need.
//!
//! Each write is one IMMEDIATE transaction appending one hash-chained event
//! (I6) and updating the `schedule_state` index. Nothing here touches the
//! outbox: scheduler decisions are not tracking rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use serde_json::json;

use super::{Journal, Result, chain, parse_timestamp, timestamp};
use crate::journal::identity;
use crate::schedule::firing::Reason;

/// What `chronicle schedules` shows of a schedule's past.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScheduleRecord {
    /// `chronicle pause` holds the schedule: firings are skipped.
    pub paused: bool,
    /// When a daemon first took the schedule on; catch-up's reference
    /// until its first decision.
    pub armed_at: Option<DateTime<Utc>>,
    /// The scheduled instant of the last decision, and its reason.
    pub last_decision_at: Option<DateTime<Utc>>,
    /// Why: answers "why didn't it run?" without reading the event log.
    pub last_reason: Option<String>,
    /// How the last collection run ended (with its week counts).
    pub last_outcome: Option<String>,
    /// When that run ended.
    pub last_outcome_at: Option<String>,
}

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
}

/// What /healthz reports about the journal and the reconciler.
#[derive(Debug, Clone, Serialize)]
pub struct SyncHealth {
    /// When the reconciler last tried to sync.
    pub last_attempt_at: Option<String>,
    /// When a sync last succeeded: how stale Postgres may be.
    pub last_success_at: Option<String>,
    /// Why the last attempt failed; none when it succeeded.
    pub last_error: Option<String>,
}

impl Journal {
    /// One IMMEDIATE transaction: an event about `subject`, then `also` on
    /// the same transaction (given the event's timestamp).
    fn append_event(
        &self,
        kind: &str,
        subject: &str,
        payload: serde_json::Value,
        also: impl FnOnce(&rusqlite::Transaction<'_>, &str) -> rusqlite::Result<()>,
    ) -> Result<i64> {
        let mut connection = self.lock();
        let run = || -> rusqlite::Result<i64> {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let at = timestamp(Utc::now());
            let seq = chain::append(&tx, &at, kind, subject, &payload)?;
            also(&tx, &at)?;
            tx.commit()?;
            Ok(seq)
        };
        run().map_err(|e| self.sqlite(e))
    }

    /// An event about one schedule, keeping its `schedule_state` row.
    fn scheduler_change(
        &self,
        kind: &str,
        schedule: &str,
        payload: serde_json::Value,
        also: impl FnOnce(&rusqlite::Transaction<'_>, &str) -> rusqlite::Result<()>,
    ) -> Result<i64> {
        // The subject is the collection id, so a collection's lineage and
        // its scheduler decisions share one key.
        let subject = identity::collection_id(schedule).to_string();
        self.append_event(kind, &subject, payload, |tx, at| {
            tx.execute(
                "INSERT INTO schedule_state (name, updated_at) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at",
                params![schedule, at],
            )?;
            also(tx, at)
        })
    }

    /// Journals one firing decision (`schedule.firing`): which schedule, for
    /// which scheduled instant, and why it ran or did not. `detail` adds
    /// what the reason needs (the missed firings of a catch-up).
    pub fn record_firing(
        &self,
        schedule: &str,
        reason: Reason,
        scheduled_for: DateTime<Utc>,
        detail: serde_json::Value,
    ) -> Result<i64> {
        let mut payload = json!({
            "schedule": schedule,
            "reason": reason.as_str(),
            "scheduled_for": timestamp(scheduled_for),
        });
        if let (Some(map), serde_json::Value::Object(extra)) = (payload.as_object_mut(), detail) {
            map.extend(extra);
        }
        self.scheduler_change("schedule.firing", schedule, payload, |tx, _| {
            tx.execute(
                "UPDATE schedule_state SET last_decision_at = ?1, last_reason = ?2 WHERE name = ?3",
                params![timestamp(scheduled_for), reason.as_str(), schedule],
            )?;
            Ok(())
        })
    }

    /// Journals that a daemon took the schedule on (`schedule.armed`), once
    /// per schedule name: from then on a firing missed while the daemon is
    /// down is caught up even before the schedule's first decision.
    pub fn record_armed(&self, schedule: &str, cron: &str, timezone: &str) -> Result<bool> {
        let record = self.schedule_record(schedule)?;
        if record.armed_at.is_some() || record.last_decision_at.is_some() {
            return Ok(false);
        }
        let payload = json!({"schedule": schedule, "cron": cron, "timezone": timezone});
        self.scheduler_change("schedule.armed", schedule, payload, |tx, at| {
            tx.execute(
                "UPDATE schedule_state SET armed_at = ?1 WHERE name = ?2",
                params![at, schedule],
            )?;
            Ok(())
        })?;
        Ok(true)
    }

    /// Journals how a collection run ended (`schedule.run_finished`).
    /// `outcome` is `completed`, `failed` or `stopped`.
    pub fn record_run_finished(
        &self,
        schedule: &str,
        outcome: &str,
        completed: usize,
        failed: usize,
        error: Option<&str>,
    ) -> Result<i64> {
        let payload = json!({
            "schedule": schedule,
            "outcome": outcome,
            "weeks_completed": completed,
            "weeks_failed": failed,
            "error": error,
        });
        let summary = format!("{outcome} ({completed} completed, {failed} failed)");
        self.scheduler_change("schedule.run_finished", schedule, payload, |tx, at| {
            tx.execute(
                "UPDATE schedule_state SET last_outcome = ?1, last_outcome_at = ?2 WHERE name = ?3",
                params![summary, at, schedule],
            )?;
            Ok(())
        })
    }

    /// `chronicle pause` / `resume` (`schedule.paused`, `schedule.resumed`).
    /// Returns false when the schedule already was in that state (nothing
    /// journaled).
    pub fn set_paused(&self, schedule: &str, paused: bool) -> Result<bool> {
        if self.schedule_record(schedule)?.paused == paused {
            return Ok(false);
        }
        let kind = if paused {
            "schedule.paused"
        } else {
            "schedule.resumed"
        };
        let payload = json!({"schedule": schedule, "by": whoami()});
        self.scheduler_change(kind, schedule, payload, |tx, at| {
            tx.execute(
                "UPDATE schedule_state SET paused = ?1, paused_at = ?2 WHERE name = ?3",
                params![paused, paused.then_some(at), schedule],
            )?;
            Ok(())
        })?;
        Ok(true)
    }

    /// Journals a daemon-wide event (subject `scheduler`):
    /// `schedules.reloaded` (a reload, or its refusal with the error, the old
    /// set kept) and `daemon.stopped` (how the shutdown went).
    pub fn record_scheduler_event(&self, kind: &str, payload: serde_json::Value) -> Result<i64> {
        self.append_event(kind, "scheduler", payload, |_, _| Ok(()))
    }

    pub fn schedule_record(&self, schedule: &str) -> Result<ScheduleRecord> {
        let connection = self.lock();
        let record = connection
            .query_row(
                "SELECT paused, last_decision_at, last_reason, last_outcome, last_outcome_at,
                        armed_at
                 FROM schedule_state WHERE name = ?1",
                [schedule],
                |row| {
                    let at: Option<String> = row.get(1)?;
                    let armed: Option<String> = row.get(5)?;
                    Ok(ScheduleRecord {
                        paused: row.get(0)?,
                        armed_at: armed.as_deref().and_then(parse_timestamp),
                        last_decision_at: at.as_deref().and_then(parse_timestamp),
                        last_reason: row.get(2)?,
                        last_outcome: row.get(3)?,
                        last_outcome_at: row.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sqlite(e))?;
        Ok(record.unwrap_or_default())
    }

    /// Proves the journal takes a durable write (for /healthz).
    pub fn probe_write(&self) -> Result<()> {
        let connection = self.lock();
        connection
            .execute(
                "INSERT INTO health_probe (id, checked_at) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                [timestamp(Utc::now())],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    pub fn sync_health(&self) -> Result<SyncHealth> {
        let connection = self.lock();
        connection
            .query_row(
                "SELECT last_attempt_at, last_success_at, last_error FROM sync_state WHERE id = 1",
                [],
                |row| {
                    Ok(SyncHealth {
                        last_attempt_at: row.get(0)?,
                        last_success_at: row.get(1)?,
                        last_error: row.get(2)?,
                    })
                },
            )
            .map_err(|e| self.sqlite(e))
    }

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
        counts(
            "SELECT state, count(*) FROM attempts GROUP BY state",
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
        // attempt, through the id's unique index; a join over every
        // completed week held the journal for 0.2 s a scrape at 104,000
        // weeks. A week is completed only by `record_succeeded`, which
        // always names its attempt.
        let lacking: i64 = connection
            .query_row(
                "SELECT count(*) FROM attempts a
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
        Ok(snapshot)
    }
}

/// Who paused a schedule, as far as the process can tell.
fn whoami() -> Option<String> {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
}
