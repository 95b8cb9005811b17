//! Execution attempts: the journal's side of one week's trip through AMC.
//! Each transition (intent, submitted or adopted, status, succeeded,
//! failed, cancelled, abandoned) is one durable write (I1), and planning and
//! recovery read the attempts left open (I2).
//!
//! Owns the attempt rows and their week's status. Which calls to make is the
//! runner's; what Postgres sees of them is `rows`'.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{OptionalExtension, Row, params};
use uuid::Uuid;

use super::alerts::{self, AlertKind, NewAlert};
use super::events::{
    AttemptAbandoned, AttemptEnded, AttemptIntent, AttemptStatus, AttemptSubmitted,
    AttemptSucceeded, Event, RunnerStarted,
};
use super::outbox::Entity;
use super::sql::{bad_value, parse_date, request_at, time_at, uuid_at};
use super::{Journal, Result, identity};
use crate::amc::result::Summary as ResultSummary;
use crate::amc::{CreateExecution, Execution, Status};

/// Where an execution attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Journaled before the POST; whether AMC created it is not known.
    Intent,
    /// AMC's execution id is journaled; not finished yet.
    Submitted,
    Succeeded,
    Failed,
    /// AMC was asked and holds no execution for it: safe to submit anew.
    Abandoned,
}

impl Phase {
    /// The stored `state` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Intent => "intent",
            Phase::Submitted => "submitted",
            Phase::Succeeded => "succeeded",
            Phase::Failed => "failed",
            Phase::Abandoned => "abandoned",
        }
    }

    /// Every state, in the order an attempt moves through them.
    pub const ALL: [Phase; 5] = [
        Phase::Intent,
        Phase::Submitted,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Abandoned,
    ];

    pub fn parse(text: &str) -> Option<Phase> {
        Some(match text {
            "intent" => Phase::Intent,
            "submitted" => Phase::Submitted,
            "succeeded" => Phase::Succeeded,
            "failed" => Phase::Failed,
            "abandoned" => Phase::Abandoned,
            _ => return None,
        })
    }
}

/// An attempt the runner still has to see through.
#[derive(Debug, Clone)]
pub struct OpenAttempt {
    pub id: Uuid,
    pub week_id: Uuid,
    pub phase: Phase,
    pub amc_execution_id: Option<String>,
    pub amc_status: Option<Status>,
    pub request: CreateExecution,
    pub created_at: DateTime<Utc>,
}

/// A week that needs work, as planning hands it to the runner.
#[derive(Debug, Clone)]
pub struct WorkItem {
    pub week_id: Uuid,
    pub week_start: NaiveDate,
    /// Set when an earlier process left an attempt unfinished: it is
    /// resumed, never submitted again.
    pub open_attempt: Option<OpenAttempt>,
}

/// An open attempt `chronicle cancel` may end, with where it belongs.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    /// The attempt to end; its AMC id is what is cancelled.
    pub attempt: OpenAttempt,
    /// The collection's name, for the user.
    pub collection: String,
    /// Where the execution lives in AMC.
    pub instance_id: String,
    /// For the user, and to tell several matches apart.
    pub week_start: NaiveDate,
}

/// sha256 (hex) over a result's stored `columns`, sample `rows` (empty when
/// none are kept) and `stats`, each followed by a line feed: what
/// `attempt.succeeded` carries and the audit recomputes.
pub(super) fn result_digest(columns: &str, rows: Option<&str>, stats: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut sha = Sha256::new();
    for part in [columns, rows.unwrap_or(""), stats] {
        sha.update(part.as_bytes());
        sha.update(b"\n");
    }
    hex::encode(sha.finalize())
}

pub(super) const OPEN_ATTEMPT_COLUMNS: &str =
    "a.id, a.week_id, a.state, a.amc_execution_id, a.amc_status, a.request, a.created_at";

impl Journal {
    /// Journals the intent to submit `request` for a week (I1): committed
    /// and fsynced before the POST is sent.
    pub fn record_intent(
        &self,
        week_id: Uuid,
        request: &CreateExecution,
        triggered_by: &str,
    ) -> Result<OpenAttempt> {
        let attempt_id = identity::attempt_id();
        let request_json = serde_json::to_value(request)
            .map_err(|e| self.invalid(e.to_string()))?
            .to_string();
        let created_at = Utc::now();
        let event = Event::AttemptIntent(AttemptIntent {
            week_id,
            request: request.clone(),
            triggered_by: triggered_by.to_owned(),
        });
        self.change(|c| {
            let seq = c.record(&attempt_id.to_string(), &event)?;
            c.execute(
                "INSERT INTO attempts (id, week_id, state, request, triggered_by, created_at,
                     updated_at, journal_seq)
                 VALUES (?1, ?2, 'intent', ?3, ?4, ?5, ?5, ?6)",
                params![
                    attempt_id.to_string(),
                    week_id.to_string(),
                    request_json,
                    triggered_by,
                    c.at,
                    seq
                ],
            )?;
            c.execute(
                "UPDATE weeks SET status = 'running', attempt_id = ?1, attempts = attempts + 1,
                     started_at = ?2, completed_at = NULL, error_message = NULL,
                     updated_at = ?2, journal_seq = ?3
                 WHERE id = ?4",
                params![attempt_id.to_string(), c.at, seq, week_id.to_string()],
            )?;
            c.mark(Entity::Week, week_id, seq)
        })?;
        Ok(OpenAttempt {
            id: attempt_id,
            week_id,
            phase: Phase::Intent,
            amc_execution_id: None,
            amc_status: None,
            request: request.clone(),
            created_at,
        })
    }

    /// Journals AMC's execution id for an attempt (I1: before anything
    /// depends on it). `adopted` says it was found by listing, not answered.
    pub fn record_submitted(
        &self,
        attempt: &mut OpenAttempt,
        execution: &Execution,
        adopted: bool,
    ) -> Result<()> {
        let submitted = AttemptSubmitted {
            amc_execution_id: execution.workflow_execution_id.clone(),
            status: execution.status,
        };
        let event = if adopted {
            Event::AttemptAdopted(submitted)
        } else {
            Event::AttemptSubmitted(submitted)
        };
        self.change(|c| {
            let seq = c.record(&attempt.id.to_string(), &event)?;
            c.execute(
                "UPDATE attempts SET state = 'submitted', amc_execution_id = ?1, amc_status = ?2,
                     submitted_at = ?3, updated_at = ?3, journal_seq = ?4
                 WHERE id = ?5",
                params![
                    execution.workflow_execution_id,
                    execution.status.as_str(),
                    c.at,
                    seq,
                    attempt.id.to_string()
                ],
            )?;
            c.execute(
                "UPDATE weeks SET updated_at = ?1, journal_seq = ?2 WHERE id = ?3",
                params![c.at, seq, attempt.week_id.to_string()],
            )?;
            c.mark(Entity::Execution, attempt.id, seq)?;
            c.mark(Entity::Week, attempt.week_id, seq)
        })?;
        attempt.phase = Phase::Submitted;
        attempt.amc_execution_id = Some(execution.workflow_execution_id.clone());
        attempt.amc_status = Some(execution.status);
        Ok(())
    }

    /// Journals a status AMC reported, once per change.
    pub fn record_status(&self, attempt: &mut OpenAttempt, status: Status) -> Result<()> {
        if attempt.amc_status == Some(status) {
            return Ok(());
        }
        self.change(|c| {
            let seq = c.record(
                &attempt.id.to_string(),
                &Event::AttemptStatus(AttemptStatus { status }),
            )?;
            c.execute(
                "UPDATE attempts SET amc_status = ?1, updated_at = ?2, journal_seq = ?3
                 WHERE id = ?4",
                params![status.as_str(), c.at, seq, attempt.id.to_string()],
            )?;
            c.mark(Entity::Execution, attempt.id, seq)
        })?;
        attempt.amc_status = Some(status);
        Ok(())
    }

    /// The result was fetched and checked: the attempt and its week are done.
    pub fn record_succeeded(&self, attempt: &OpenAttempt, result: &ResultSummary) -> Result<()> {
        let record_count = result.record_count;
        let data_checksum = result.checksum.as_str();
        let count = i64::try_from(record_count).map_err(|e| self.invalid(e.to_string()))?;
        let columns = serde_json::to_string(&result.result_columns)
            .map_err(|e| self.invalid(e.to_string()))?;
        // No sample kept (`postgres.result_rows_limit = 0`): `result_rows`
        // stays NULL, as the application leaves it for a result it did not
        // keep.
        let rows = (result.result_sample_size > 0).then_some(result.result_rows_json.as_str());
        let stats = serde_json::Value::Object(result.summary_stats.clone()).to_string();
        let digest = result_digest(&columns, rows, &stats);
        self.change(|c| {
            let seq = c.record(
                &attempt.id.to_string(),
                &Event::AttemptSucceeded(AttemptSucceeded {
                    week_id: attempt.week_id,
                    amc_execution_id: attempt.amc_execution_id.clone(),
                    record_count,
                    data_checksum: data_checksum.to_owned(),
                    result_digest: Some(digest.clone()),
                }),
            )?;
            c.execute(
                "INSERT INTO attempt_results (attempt_id, columns, sample_rows, total_rows,
                     sample_size, summary_stats)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    attempt.id.to_string(),
                    columns,
                    rows,
                    count,
                    result.result_sample_size as i64,
                    stats
                ],
            )?;
            c.execute(
                "UPDATE attempts SET state = 'succeeded', amc_status = 'SUCCEEDED', row_count = ?1,
                     data_checksum = ?2, completed_at = ?3, updated_at = ?3, journal_seq = ?4
                 WHERE id = ?5",
                params![count, data_checksum, c.at, seq, attempt.id.to_string()],
            )?;
            c.execute(
                "UPDATE weeks SET status = 'completed', record_count = ?1, data_checksum = ?2,
                     completed_at = ?3, error_message = NULL, updated_at = ?3, journal_seq = ?4
                 WHERE id = ?5",
                params![count, data_checksum, c.at, seq, attempt.week_id.to_string()],
            )?;
            c.mark(Entity::Execution, attempt.id, seq)?;
            c.mark(Entity::Week, attempt.week_id, seq)?;
            c.touch_collection_of_week(attempt.week_id, seq)
        })
    }

    /// The attempt ended without a result. With `retry`, the week goes back
    /// to pending for a new attempt; otherwise the week has failed.
    pub fn record_failed(
        &self,
        attempt: &OpenAttempt,
        status: Status,
        message: &str,
        retry: bool,
    ) -> Result<()> {
        self.record_ended(attempt, Event::AttemptFailed, status, message, retry)
    }

    /// A person cancelled the attempt's execution in AMC (`chronicle
    /// cancel`): the attempt ends CANCELLED; the week goes back to pending,
    /// or is failed when `fail_week`.
    pub fn record_cancelled(
        &self,
        attempt: &OpenAttempt,
        message: &str,
        fail_week: bool,
    ) -> Result<()> {
        self.record_ended(
            attempt,
            Event::AttemptCancelled,
            Status::Cancelled,
            message,
            !fail_week,
        )
    }

    fn record_ended(
        &self,
        attempt: &OpenAttempt,
        kind: fn(AttemptEnded) -> Event,
        status: Status,
        message: &str,
        retry: bool,
    ) -> Result<()> {
        let event = kind(AttemptEnded {
            week_id: attempt.week_id,
            amc_execution_id: attempt.amc_execution_id.clone(),
            status,
            error: message.to_owned(),
            week_failed: !retry,
        });
        self.change(|c| {
            let seq = c.record(&attempt.id.to_string(), &event)?;
            c.execute(
                "UPDATE attempts SET state = 'failed', amc_status = ?1, error_message = ?2,
                     completed_at = ?3, updated_at = ?3, journal_seq = ?4
                 WHERE id = ?5",
                params![status.as_str(), message, c.at, seq, attempt.id.to_string()],
            )?;
            c.execute(
                "UPDATE weeks SET status = ?1, error_message = ?2, completed_at = ?3,
                     updated_at = ?4, journal_seq = ?5
                 WHERE id = ?6",
                params![
                    if retry { "pending" } else { "failed" },
                    message,
                    (!retry).then_some(c.at.as_str()),
                    c.at,
                    seq,
                    attempt.week_id.to_string()
                ],
            )?;
            c.mark(Entity::Execution, attempt.id, seq)?;
            c.mark(Entity::Week, attempt.week_id, seq)?;
            c.touch_collection_of_week(attempt.week_id, seq)?;
            // A week failed after its retries: the operator hears of it
            // from this same transaction, so a crash cannot lose the alert.
            if !retry && matches!(event, Event::AttemptFailed(_)) {
                let (schedule, week) = alerts::schedule_and_week(c, attempt.week_id)?;
                alerts::raise(
                    c,
                    &NewAlert {
                        kind: AlertKind::WeekFailed,
                        cause: attempt.id.to_string(),
                        subject: attempt.week_id.to_string(),
                        summary: format!(
                            "{schedule} week {week} failed after its retries: {message}"
                        ),
                        details: serde_json::json!({
                            "schedule": schedule,
                            "week_start": week,
                            "week_id": attempt.week_id,
                            "attempt_id": attempt.id,
                            "amc_execution_id": attempt.amc_execution_id,
                            "amc_status": status.as_str(),
                            "error": message,
                        }),
                    },
                )?;
            }
            Ok(())
        })
    }

    /// AMC holds no execution for this intent: the week may be submitted
    /// again without paying twice.
    pub fn record_abandoned(&self, attempt: &OpenAttempt, reason: &str) -> Result<()> {
        self.change(|c| {
            let seq = c.record(
                &attempt.id.to_string(),
                &Event::AttemptAbandoned(AttemptAbandoned {
                    week_id: attempt.week_id,
                    reason: reason.to_owned(),
                }),
            )?;
            c.execute(
                "UPDATE attempts SET state = 'abandoned', error_message = ?1, completed_at = ?2,
                     updated_at = ?2, journal_seq = ?3
                 WHERE id = ?4",
                params![reason, c.at, seq, attempt.id.to_string()],
            )?;
            c.execute(
                "UPDATE weeks SET status = 'pending', updated_at = ?1, journal_seq = ?2
                 WHERE id = ?3",
                params![c.at, seq, attempt.week_id.to_string()],
            )?;
            c.mark(Entity::Week, attempt.week_id, seq)
        })
    }

    /// Notes a runner's start and how many attempts it found open: those it
    /// recovers before planning anything new. Returns that count.
    pub fn record_runner_start(&self, command: &str) -> Result<i64> {
        self.change(|c| {
            let open: i64 = c.tx.query_row(
                "SELECT count(*) FROM attempts WHERE state IN ('intent', 'submitted')",
                [],
                |row| row.get(0),
            )?;
            c.record(
                "runner",
                &Event::RunnerStarted(RunnerStarted {
                    command: command.to_owned(),
                    pid: std::process::id(),
                    open_attempts: open,
                }),
            )?;
            Ok(open)
        })
    }

    /// Open attempts matched by a week date (`YYYY-MM-DD`), an attempt id or
    /// an AMC execution id: what `chronicle cancel` may end.
    pub fn cancel_targets(&self, key: &str) -> Result<Vec<CancelTarget>> {
        let connection = self.lock();
        let query = format!(
            "SELECT c.name, c.instance_id, w.week_start, {}
             FROM attempts a JOIN weeks w ON w.id = a.week_id
             JOIN collections c ON c.id = w.collection_id
             WHERE a.state IN ('intent', 'submitted')
               AND (a.id = ?1 OR a.amc_execution_id = ?1 OR w.week_start = ?1)
             ORDER BY c.name, w.week_start",
            OPEN_ATTEMPT_COLUMNS
        );
        let mut statement = connection.prepare(&query).map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([key.trim()], |row| {
                let week: String = row.get(2)?;
                Ok(CancelTarget {
                    collection: row.get(0)?,
                    instance_id: row.get(1)?,
                    week_start: parse_date(&week).ok_or_else(|| {
                        rusqlite::Error::FromSqlConversionFailure(
                            2,
                            rusqlite::types::Type::Text,
                            format!("`{week}` is not a date").into(),
                        )
                    })?,
                    attempt: open_attempt_offset(row, 3)?,
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sqlite(e))
    }

    /// The attempt that already owns an AMC execution id, if any: adoption
    /// must never claim an execution twice.
    pub fn attempt_owning(&self, amc_execution_id: &str) -> Result<Option<Uuid>> {
        let connection = self.lock();
        connection
            .query_row(
                "SELECT id FROM attempts WHERE amc_execution_id = ?1",
                [amc_execution_id],
                |row| uuid_at(row, 0),
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }
}

pub(super) fn open_attempt_offset(row: &Row<'_>, offset: usize) -> rusqlite::Result<OpenAttempt> {
    let phase: String = row.get(offset + 2)?;
    let status: Option<String> = row.get(offset + 4)?;
    Ok(OpenAttempt {
        id: uuid_at(row, offset)?,
        week_id: uuid_at(row, offset + 1)?,
        phase: Phase::parse(&phase).ok_or_else(|| bad_value(offset + 2, &phase))?,
        amc_execution_id: row.get(offset + 3)?,
        amc_status: status.as_deref().map(Status::parse),
        request: request_at(row, offset + 5)?,
        created_at: time_at(row, offset + 6)?,
    })
}
