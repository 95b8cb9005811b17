//! Attempts a run had to leave open: an intent whose create outcome AMC
//! could not be asked about, a listing that matched several executions, a
//! result that could not be downloaded. Each time, one hash-chained
//! `attempt.unresolved` event with the reason, so `status`, `weeks` and
//! /metrics can show what waits and why (I2: never abandoned blind, never
//! submitted again, never wedged silently).
//!
//! Owns that one event and the `unresolved_attempts` index (V9) `status`,
//! `weeks` and /metrics read instead of the log: a row per open attempt
//! whose latest event is `attempt.unresolved`, removed by a trigger when
//! the attempt moves on. It changes no tracked state and marks nothing in
//! the outbox: the attempt stays as it was (`intent` or `submitted`) and
//! the next run takes it up again. Each one raises an alert.

use rusqlite::params;
use serde::Serialize;

use super::alerts::{self, AlertKind, NewAlert};
use super::events::{AttemptUnresolved, Event};
use super::{Journal, OpenAttempt, Result};

/// An open attempt a run had to leave, with why.
#[derive(Debug, Clone, Serialize)]
pub struct Unresolved {
    pub attempt_id: String,
    pub week_id: String,
    /// The schedule whose week it is.
    pub schedule: String,
    pub week_start: String,
    pub reason: String,
    /// When the run left it.
    pub at: String,
}

impl Journal {
    /// Journals that `attempt` was left open by this run, and why.
    pub fn record_unresolved(&self, attempt: &OpenAttempt, reason: &str) -> Result<i64> {
        let event = Event::AttemptUnresolved(AttemptUnresolved {
            week_id: attempt.week_id,
            reason: reason.to_owned(),
        });
        self.change(|c| {
            let seq = c.record(&attempt.id.to_string(), &event)?;
            c.execute(
                "INSERT INTO unresolved_attempts (attempt_id, week_id, reason, at, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (attempt_id) DO UPDATE SET
                     reason = excluded.reason, at = excluded.at, seq = excluded.seq",
                params![
                    attempt.id.to_string(),
                    attempt.week_id.to_string(),
                    reason,
                    c.at,
                    seq
                ],
            )?;
            let (schedule, week) = alerts::schedule_and_week(c, attempt.week_id)?;
            // One alert per time a run leaves it: the cause is this event.
            alerts::raise(
                c,
                &NewAlert {
                    kind: AlertKind::AttemptUnresolved,
                    cause: format!("{}:{seq}", attempt.id),
                    subject: attempt.id.to_string(),
                    summary: format!("{schedule} week {week}: attempt left open: {reason}"),
                    details: serde_json::json!({
                        "schedule": schedule,
                        "week_start": week,
                        "week_id": attempt.week_id,
                        "attempt_id": attempt.id,
                        "reason": reason,
                    }),
                },
            )?;
            Ok(seq)
        })
    }

    /// How many open attempts wait unresolved, and the newest `limit` of
    /// them with their reasons (a small table, not the log).
    pub fn unresolved(&self, limit: usize) -> Result<(i64, Vec<Unresolved>)> {
        let connection = self.lock();
        let sqlite = |e| self.sqlite(e);
        let count = connection
            .query_row("SELECT count(*) FROM unresolved_attempts", [], |row| {
                row.get(0)
            })
            .map_err(sqlite)?;
        let mut statement = connection
            .prepare(
                "SELECT u.attempt_id, u.week_id, c.name, w.week_start, u.reason, u.at
                 FROM unresolved_attempts u JOIN weeks w ON w.id = u.week_id
                 JOIN collections c ON c.id = w.collection_id
                 ORDER BY u.seq DESC LIMIT ?1",
            )
            .map_err(sqlite)?;
        let rows = statement
            .query_map([limit as i64], |row| {
                Ok(Unresolved {
                    attempt_id: row.get(0)?,
                    week_id: row.get(1)?,
                    schedule: row.get(2)?,
                    week_start: row.get(3)?,
                    reason: row.get(4)?,
                    at: row.get(5)?,
                })
            })
            .map_err(sqlite)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sqlite)?;
        Ok((count, rows))
    }
}
