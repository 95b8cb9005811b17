//! A re-run a person asked for (DESIGN I2: "unless a person asks for a
//! re-run"): a completed or failed week goes back to pending with its
//! attempt until now kept and marked superseded, in one hash-chained
//! `week.rerun_requested` event that says who asked and why.
//!
//! Owns that transition and its refusals. Running the week afterwards is
//! the runner's (its attempts are `triggered_by` `rerun`); Postgres keeps
//! the superseded execution's row and the week points at the new one.

use chrono::NaiveDate;
use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

use super::events::{Event, WeekRerun};
use super::outbox::Entity;
use super::sql::uuid_at;
use super::{Journal, Result, WorkItem};

/// Why a re-run was not journaled: what the person named cannot be run
/// again now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RerunRefusal {
    #[error(
        "the journal holds no collection for schedule `{0}` yet: run `chronicle backfill {0}` first"
    )]
    NoCollection(String),
    #[error(
        "schedule `{schedule}` has no week starting {week} (not due yet, or before the collection's start): `chronicle weeks {schedule}` lists its weeks"
    )]
    NoWeek { schedule: String, week: NaiveDate },
    #[error(
        "week {week} of `{schedule}` is {status}: only a completed or failed week can be re-run ({hint})"
    )]
    NotDone {
        schedule: String,
        week: NaiveDate,
        status: String,
        hint: &'static str,
    },
}

/// Who asked for a re-run and why.
#[derive(Debug, Clone)]
pub struct RerunAsk {
    pub by: Option<String>,
    pub reason: String,
    /// The daemon request it is carried out for, if any.
    pub request: Option<i64>,
}

/// The week a re-run names, as it stands: its id, status and attempt.
struct Named {
    collection: Uuid,
    week_id: Uuid,
    status: String,
    attempt: Option<Uuid>,
}

/// Finds the week and says why it cannot be re-run, if it cannot.
fn check(
    connection: &rusqlite::Connection,
    schedule: &str,
    week_start: NaiveDate,
) -> rusqlite::Result<std::result::Result<Named, RerunRefusal>> {
    let collection: Option<Uuid> = connection
        .query_row(
            "SELECT id FROM collections WHERE name = ?1",
            [schedule],
            |row| uuid_at(row, 0),
        )
        .optional()?;
    let Some(collection) = collection else {
        return Ok(Err(RerunRefusal::NoCollection(schedule.to_owned())));
    };
    let week: Option<(Uuid, String, Option<String>)> = connection
        .query_row(
            "SELECT id, status, attempt_id FROM weeks
             WHERE collection_id = ?1 AND week_start = ?2",
            params![collection.to_string(), week_start.to_string()],
            |row| Ok((uuid_at(row, 0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let Some((week_id, status, attempt)) = week else {
        return Ok(Err(RerunRefusal::NoWeek {
            schedule: schedule.to_owned(),
            week: week_start,
        }));
    };
    let hint = match status.as_str() {
        "completed" | "failed" => None,
        "running" => Some("wait for its attempt to end, or `chronicle cancel` it"),
        _ => Some("the next run collects it"),
    };
    if let Some(hint) = hint {
        return Ok(Err(RerunRefusal::NotDone {
            schedule: schedule.to_owned(),
            week: week_start,
            status,
            hint,
        }));
    }
    Ok(Ok(Named {
        collection,
        week_id,
        status,
        attempt: attempt.as_deref().and_then(|a| Uuid::parse_str(a).ok()),
    }))
}

impl Journal {
    /// Why a re-run of this week would be refused now, if it would: the
    /// daemon answers such a request at once, even while the collection
    /// is busy (it would be refused after the wait all the same).
    pub fn rerun_refusal(
        &self,
        schedule: &str,
        week_start: NaiveDate,
    ) -> Result<Option<RerunRefusal>> {
        let connection = self.lock();
        check(&connection, schedule, week_start)
            .map(|checked| checked.err())
            .map_err(|e| self.sqlite(e))
    }

    /// Journals the re-run of the week of `schedule` starting `week_start`
    /// and returns the week as work for the runner, or why it cannot be
    /// re-run.
    pub fn request_rerun(
        &self,
        schedule: &str,
        week_start: NaiveDate,
        ask: &RerunAsk,
    ) -> Result<std::result::Result<WorkItem, RerunRefusal>> {
        self.change(|c| {
            let Named {
                collection,
                week_id,
                status,
                attempt: superseded,
            } = match check(c.tx, schedule, week_start)? {
                Ok(named) => named,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let seq = c.record(
                &week_id.to_string(),
                &Event::WeekRerunRequested(WeekRerun {
                    collection_id: collection,
                    week_start,
                    previous_status: status,
                    superseded_attempt: superseded,
                    by: ask.by.clone(),
                    reason: ask.reason.clone(),
                    request: ask.request,
                }),
            )?;
            if let Some(attempt) = superseded {
                c.execute(
                    "UPDATE attempts SET superseded_at = ?1, updated_at = ?1, journal_seq = ?2
                     WHERE id = ?3",
                    params![c.at, seq, attempt.to_string()],
                )?;
                c.mark(Entity::Execution, attempt, seq)?;
            }
            c.execute(
                "UPDATE weeks SET status = 'pending', error_message = NULL, completed_at = NULL,
                     updated_at = ?1, journal_seq = ?2
                 WHERE id = ?3",
                params![c.at, seq, week_id.to_string()],
            )?;
            c.mark(Entity::Week, week_id, seq)?;
            c.touch_collection_of_week(week_id, seq)?;
            Ok(Ok(WorkItem {
                week_id,
                week_start,
                open_attempt: None,
            }))
        })
    }
}
