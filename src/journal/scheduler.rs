//! The scheduler's record: every firing decision with its reason, each
//! collection run's outcome, pauses and resumes, schedule reloads, the
//! daemon's stop; and the schedule state `chronicle schedules` and the next
//! start read.
//!
//! Each write is one IMMEDIATE transaction appending one hash-chained event
//! (I6) and updating the `schedule_state` index. Nothing here touches the
//! outbox: scheduler decisions are not tracking rows.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::alerts::{self, AlertKind, NewAlert};
use super::change::Change;
use super::events::{
    DaemonStopped, Event, PauseChange, RunOutcome, ScheduleArmed, ScheduleFiring,
    ScheduleRunFinished, SchedulesReloaded,
};
use super::sql::parse_timestamp;
use super::{Journal, Result, identity};
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

impl Journal {
    /// One write about one schedule: its event (subject: the collection id,
    /// so a collection's lineage and its scheduler decisions share one key)
    /// and its `schedule_state` row, kept by `also`.
    fn scheduler_change(
        &self,
        schedule: &str,
        event: &Event,
        also: impl FnOnce(&Change<'_>) -> rusqlite::Result<()>,
    ) -> Result<i64> {
        let subject = identity::collection_id(schedule).to_string();
        self.change(|c| {
            let seq = c.record(&subject, event)?;
            c.execute(
                "INSERT INTO schedule_state (name, updated_at) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at",
                params![schedule, c.at],
            )?;
            also(c)?;
            Ok(seq)
        })
    }

    /// Journals one firing decision (`schedule.firing`): which schedule, for
    /// which scheduled instant, and why it ran or did not, with what the
    /// reason needs (the missed firings of a catch-up, a person's command).
    pub fn record_firing(&self, firing: ScheduleFiring) -> Result<i64> {
        let (schedule, reason, at) = (
            firing.schedule.clone(),
            firing.reason,
            firing.scheduled_for.clone(),
        );
        let skipped = !reason.runs();
        self.scheduler_change(&schedule, &Event::ScheduleFiring(firing), |c| {
            c.execute(
                "UPDATE schedule_state SET last_decision_at = ?1, last_reason = ?2,
                     skipped_firings = skipped_firings + ?3
                 WHERE name = ?4",
                params![at, reason.as_str(), i64::from(skipped), schedule],
            )?;
            // An overlap means a run outlasted the cron's interval: each
            // one is alerted. A pause is a person's choice (journaled with
            // who): its first skipped firing is alerted, the later ones of
            // the same pause only counted, or a paused hourly schedule
            // would page someone every hour.
            let (cause, why) = match reason {
                Reason::SkippedOverlap => (
                    format!("{schedule}:{at}"),
                    "the previous run was still going".to_owned(),
                ),
                Reason::SkippedPaused => {
                    let paused_at: Option<String> = c.tx.query_row(
                        "SELECT paused_at FROM schedule_state WHERE name = ?1",
                        [&schedule],
                        |row| row.get(0),
                    )?;
                    let since = paused_at.unwrap_or_default();
                    (
                        format!("{schedule}:paused:{since}"),
                        format!(
                            "it is paused (since {since}); later firings are skipped without an alert until `chronicle resume`"
                        ),
                    )
                }
                _ => return Ok(()),
            };
            alerts::raise(
                c,
                &NewAlert {
                    kind: AlertKind::FiringSkipped,
                    cause,
                    subject: identity::collection_id(&schedule).to_string(),
                    summary: format!(
                        "{schedule}: the firing for {at} was skipped ({}): {why}",
                        reason.as_str()
                    ),
                    details: serde_json::json!({
                        "schedule": schedule,
                        "scheduled_for": at,
                        "reason": reason.as_str(),
                    }),
                },
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
        let event = Event::ScheduleArmed(ScheduleArmed {
            schedule: schedule.to_owned(),
            cron: cron.to_owned(),
            timezone: timezone.to_owned(),
        });
        self.scheduler_change(schedule, &event, |c| {
            c.execute(
                "UPDATE schedule_state SET armed_at = ?1 WHERE name = ?2",
                params![c.at, schedule],
            )?;
            Ok(())
        })?;
        Ok(true)
    }

    /// Journals how a collection run ended (`schedule.run_finished`).
    pub fn record_run_finished(
        &self,
        schedule: &str,
        outcome: RunOutcome,
        completed: usize,
        failed: usize,
        error: Option<&str>,
    ) -> Result<i64> {
        let event = Event::ScheduleRunFinished(ScheduleRunFinished {
            schedule: schedule.to_owned(),
            outcome,
            weeks_completed: completed as u64,
            weeks_failed: failed as u64,
            error: error.map(str::to_owned),
        });
        let summary = format!(
            "{} ({completed} completed, {failed} failed)",
            outcome.as_str()
        );
        self.scheduler_change(schedule, &event, |c| {
            c.execute(
                "UPDATE schedule_state SET last_outcome = ?1, last_outcome_at = ?2,
                     last_success_at = CASE WHEN ?3 THEN ?2 ELSE last_success_at END
                 WHERE name = ?4",
                params![summary, c.at, outcome == RunOutcome::Completed, schedule],
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
        let change = PauseChange {
            schedule: schedule.to_owned(),
            by: whoami(),
        };
        let event = if paused {
            Event::SchedulePaused(change)
        } else {
            Event::ScheduleResumed(change)
        };
        self.scheduler_change(schedule, &event, |c| {
            c.execute(
                "UPDATE schedule_state SET paused = ?1, paused_at = ?2 WHERE name = ?3",
                params![paused, paused.then_some(c.at.as_str()), schedule],
            )?;
            Ok(())
        })?;
        Ok(true)
    }

    /// Journals a reload of the schedules folder, or its refusal with the
    /// error and the old set kept (`schedules.reloaded`, subject
    /// `scheduler`).
    pub fn record_reload(&self, reloaded: SchedulesReloaded) -> Result<i64> {
        self.change(|c| c.record("scheduler", &Event::SchedulesReloaded(reloaded)))
    }

    /// Journals how a daemon's shutdown went (`daemon.stopped`, subject
    /// `scheduler`).
    pub fn record_daemon_stopped(&self, stopped: DaemonStopped) -> Result<i64> {
        self.change(|c| c.record("scheduler", &Event::DaemonStopped(stopped)))
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
}

/// Who paused a schedule (or asked for a re-run), as far as the process
/// can tell.
pub fn whoami() -> Option<String> {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(account_name)
}

/// The effective user's name from the password database (a service or a
/// `sudo` shell may set neither USER nor LOGNAME), else `uid N`.
fn account_name() -> Option<String> {
    let uid = unsafe { libc::geteuid() };
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // getpwuid_r: the re-entrant form, writing into our own buffer.
    let status = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status == 0 && !found.is_null() && !entry.pw_name.is_null() {
        let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
        return Some(name.to_string_lossy().into_owned());
    }
    Some(format!("uid {uid}"))
}
