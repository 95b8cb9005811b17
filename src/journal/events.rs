//! The journal's vocabulary: every kind of event the log records, each
//! with one payload struct. The writers emit these and the replay matches
//! them exhaustively, so a kind added without a replay rule does not
//! compile (I6).
//!
//! Owns the kind names, the payload shapes and their stored JSON text. Not
//! the hash chain (`chain`), nor what an event does to the state tables
//! (the writers, and `replay` for the audit).

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::amc::{CreateExecution, Status};
use crate::schedule::firing::Reason;

/// Declares the event enum and its kind names from one list, so a name is
/// written once and `Event::KINDS` can never miss a variant.
macro_rules! events {
    ($( $(#[$doc:meta])* $variant:ident($payload:ty) = $name:literal, )*) => {
        /// One journaled change, as its writer states it.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind", content = "payload")]
        pub enum Event {
            $( $(#[$doc])* #[serde(rename = $name)] $variant($payload), )*
        }

        impl Event {
            /// Every kind this build writes and understands.
            pub const KINDS: &[&str] = &[$($name),*];

            /// The stored `kind` column, e.g. `attempt.succeeded`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( Event::$variant(_) => $name, )*
                }
            }
        }
    };
}

events! {
    /// A schedule's collection was recorded for the first time.
    CollectionCreated(CollectionCreated) = "collection.created",
    /// Its start moved earlier or its schedule file changed.
    CollectionUpdated(CollectionUpdated) = "collection.updated",
    /// A week became due and was added as pending.
    WeekAdded(WeekAdded) = "week.added",
    /// A week of an application collection the schedule attached to, as
    /// the application left it: completed ones are never submitted again.
    WeekImported(WeekImported) = "week.imported",
    /// The intent to submit a week, committed before the POST (I1).
    AttemptIntent(AttemptIntent) = "attempt.intent",
    /// AMC answered the create with its execution id.
    AttemptSubmitted(AttemptSubmitted) = "attempt.submitted",
    /// The execution was found by listing after its answer was lost (I2).
    AttemptAdopted(AttemptSubmitted) = "attempt.adopted",
    /// AMC reported a new status word.
    AttemptStatus(AttemptStatus) = "attempt.status",
    /// The result was fetched and checked: the week is completed.
    AttemptSucceeded(AttemptSucceeded) = "attempt.succeeded",
    /// The attempt ended without a result.
    AttemptFailed(AttemptEnded) = "attempt.failed",
    /// A person cancelled the execution in AMC (`chronicle cancel`).
    AttemptCancelled(AttemptEnded) = "attempt.cancelled",
    /// AMC holds no execution for the intent: safe to submit anew.
    AttemptAbandoned(AttemptAbandoned) = "attempt.abandoned",
    /// A run had to leave the attempt open (AMC could not be asked, or
    /// its answer was not conclusive); the next run takes it up again.
    AttemptUnresolved(AttemptUnresolved) = "attempt.unresolved",
    /// A runner (`run`, `backfill`, `demo`) started on the journal.
    RunnerStarted(RunnerStarted) = "runner.started",
    /// A daemon took a schedule on for the first time.
    ScheduleArmed(ScheduleArmed) = "schedule.armed",
    /// One firing decision of the scheduler.
    ScheduleFiring(ScheduleFiring) = "schedule.firing",
    /// How a collection run ended.
    ScheduleRunFinished(ScheduleRunFinished) = "schedule.run_finished",
    /// `chronicle pause`.
    SchedulePaused(PauseChange) = "schedule.paused",
    /// `chronicle resume`.
    ScheduleResumed(PauseChange) = "schedule.resumed",
    /// A reload of the schedules folder, or its refusal.
    SchedulesReloaded(SchedulesReloaded) = "schedules.reloaded",
    /// How a daemon's shutdown went.
    DaemonStopped(DaemonStopped) = "daemon.stopped",
    /// A person asked for a completed or failed week to run again: it is
    /// pending again, its earlier attempt kept and marked superseded.
    WeekRerunRequested(WeekRerun) = "week.rerun_requested",
    /// A command asked the running daemon to carry out an operation.
    RequestMade(RequestMade) = "request.made",
    /// The daemon took the request up.
    RequestStarted(RequestStarted) = "request.started",
    /// How the request ended, as the command prints it.
    RequestFinished(RequestFinished) = "request.finished",
    /// Something an operator must hear of, queued for the webhooks.
    AlertRaised(AlertRaised) = "alert.raised",
    /// A receiver answered 2xx to an alert.
    AlertDelivered(AlertDelivered) = "alert.delivered",
}

/// Why a stored event could not be read back as an [`Event`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A kind this build does not know (a newer chronicle wrote it).
    #[error("`{0}` is not an event kind this version knows")]
    UnknownKind(String),
    /// A known kind whose payload is not its shape.
    #[error("its payload is not a `{kind}` payload: {why}")]
    Payload { kind: String, why: String },
}

impl Event {
    /// The stored `payload` text: JSON with its keys sorted (serde_json's
    /// map), the form every earlier version wrote too.
    pub fn payload_text(&self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut tagged)) => tagged
                .remove("payload")
                .unwrap_or(serde_json::Value::Null)
                .to_string(),
            // Payloads are plain structs of strings, numbers and dates.
            _ => unreachable!("an event always serializes to a tagged object"),
        }
    }

    /// Reads a stored `(kind, payload)` pair back.
    pub fn parse(kind: &str, payload: &str) -> Result<Event, ParseError> {
        if !Event::KINDS.contains(&kind) {
            return Err(ParseError::UnknownKind(kind.to_owned()));
        }
        let invalid = |why: String| ParseError::Payload {
            kind: kind.to_owned(),
            why,
        };
        let payload: serde_json::Value =
            serde_json::from_str(payload).map_err(|e| invalid(format!("not JSON: {e}")))?;
        serde_json::from_value(serde_json::json!({"kind": kind, "payload": payload}))
            .map_err(|e| invalid(e.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionCreated {
    pub name: String,
    pub start_date: NaiveDate,
    pub schedule_file: String,
    /// sha256 of the schedule file's bytes: which version ran.
    pub schedule_hash: String,
    /// Absent in journals written before these were journaled.
    #[serde(default)]
    pub workflow_id: Option<String>,
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Set when the schedule attached to a collection the application
    /// already had: its `collection_id` (`coll_...`), and the collection's
    /// id is that row's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionUpdated {
    pub start_date: NaiveDate,
    pub previous_start_date: NaiveDate,
    pub schedule_hash: String,
    /// Absent in journals written before these were journaled.
    #[serde(default)]
    pub workflow_id: Option<String>,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub schedule_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeekAdded {
    pub collection_id: Uuid,
    pub week_start: NaiveDate,
}

/// A week imported from the application's `report_data_weeks` (its id
/// kept), with the `workflow_executions` row it points at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeekImported {
    pub collection_id: Uuid,
    pub week_start: NaiveDate,
    /// The journal's word for it: `completed`, `failed`, `pending`, or
    /// `running` when its execution is live in AMC (then polled, never
    /// submitted again).
    pub status: String,
    /// What the application's row said, when it said something else.
    pub application_status: String,
    pub record_count: Option<i64>,
    pub data_checksum: Option<String>,
    pub error_message: Option<String>,
    pub execution: Option<ImportedExecution>,
}

/// The execution of an imported week, which becomes an attempt of the
/// journal with the application's ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedExecution {
    /// `workflow_executions.id`: the attempt id from now on.
    pub id: Uuid,
    /// `workflow_executions.execution_id` (`exec_...`).
    pub readable_id: String,
    pub amc_execution_id: Option<String>,
    /// `succeeded` for a completed week, `submitted` for a live one.
    pub state: String,
    pub row_count: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptIntent {
    pub week_id: Uuid,
    /// The create body exactly as it will be sent.
    pub request: CreateExecution,
    /// What started it: `backfill`, `schedule`, `catchup`, ...
    pub triggered_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptSubmitted {
    pub amc_execution_id: String,
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptStatus {
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptSucceeded {
    pub week_id: Uuid,
    pub amc_execution_id: Option<String>,
    pub record_count: u64,
    pub data_checksum: String,
    /// sha256 of what the dashboards are sent (`attempt_results`:
    /// columns, sample rows, summary stats; see `attempts::result_digest`),
    /// so the audit proves that table too. Absent before results were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_digest: Option<String>,
}

/// A failure or a cancel: the attempt ends with AMC's status and a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptEnded {
    pub week_id: Uuid,
    pub amc_execution_id: Option<String>,
    pub status: Status,
    pub error: String,
    /// True when the week failed; false sends it back to pending for a new
    /// attempt.
    pub week_failed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptAbandoned {
    pub week_id: Uuid,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptUnresolved {
    pub week_id: Uuid,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerStarted {
    pub command: String,
    pub pid: u32,
    /// Attempts an earlier process left open, resumed by this one.
    pub open_attempts: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleArmed {
    pub schedule: String,
    pub cron: String,
    pub timezone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleFiring {
    pub schedule: String,
    pub reason: Reason,
    /// The scheduled instant (RFC 3339 UTC, milliseconds).
    pub scheduled_for: String,
    /// Catch-up: how many firings were missed and coalesced into this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_firings: Option<u64>,
    /// Catch-up: the first missed instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_missed: Option<DateTime<Utc>>,
    /// Catch-up: the window it looked back over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catchup_window_seconds: Option<u64>,
    /// Manual: the command a person ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl ScheduleFiring {
    /// A decision with no detail beyond its reason: what `fired`, `resume`
    /// and the skips record.
    pub fn new(schedule: &str, reason: Reason, scheduled_for: DateTime<Utc>) -> ScheduleFiring {
        ScheduleFiring {
            schedule: schedule.to_owned(),
            reason,
            scheduled_for: scheduled_for.to_rfc3339_opts(SecondsFormat::Millis, true),
            missed_firings: None,
            first_missed: None,
            catchup_window_seconds: None,
            command: None,
        }
    }
}

/// How a collection run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    /// Every week that needed work completed.
    Completed,
    /// Some week failed after its retries, or could not be settled.
    Failed,
    /// The daemon's shutdown cut the run.
    Stopped,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Completed => "completed",
            RunOutcome::Failed => "failed",
            RunOutcome::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRunFinished {
    pub schedule: String,
    pub outcome: RunOutcome,
    pub weeks_completed: u64,
    pub weeks_failed: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PauseChange {
    pub schedule: String,
    /// The OS user, as far as the process can tell.
    pub by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulesReloaded {
    /// The names fired from now on.
    pub schedules: Vec<String>,
    /// Why the reload was refused (the old set kept), if it was.
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_previous: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStopped {
    /// Schedules whose run the grace period cut.
    pub runs_cut: Vec<String>,
    /// How the final sync went.
    pub final_sync: String,
    pub pid: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeekRerun {
    pub collection_id: Uuid,
    pub week_start: NaiveDate,
    /// `completed` or `failed`: what the week was.
    pub previous_status: String,
    /// The week's attempt until now, kept and marked superseded.
    pub superseded_attempt: Option<Uuid>,
    /// The OS user who asked.
    pub by: Option<String>,
    /// Why, in the person's words (`--reason`).
    pub reason: String,
    /// The request the daemon carried it out for, if it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<i64>,
}

/// What a person asked for, as a request to the daemon carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Operation {
    /// `chronicle rerun <schedule> <week>`.
    Rerun {
        schedule: String,
        /// Any day of the week.
        week: NaiveDate,
        reason: String,
    },
    /// `chronicle backfill <schedule> [--from D --to D]`.
    Backfill {
        schedule: String,
        /// Both or neither: the weeks that hold a day of the range.
        range: Option<(NaiveDate, NaiveDate)>,
    },
    /// `chronicle cancel <key> [--fail]`.
    Cancel { key: String, fail: bool },
}

impl Operation {
    /// The stored `kind` word.
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::Rerun { .. } => "rerun",
            Operation::Backfill { .. } => "backfill",
            Operation::Cancel { .. } => "cancel",
        }
    }

    /// The schedule whose collection the operation runs, if it runs one.
    pub fn schedule(&self) -> Option<&str> {
        match self {
            Operation::Rerun { schedule, .. } | Operation::Backfill { schedule, .. } => {
                Some(schedule)
            }
            Operation::Cancel { .. } => None,
        }
    }

    /// The command line that asks for it, for logs and the journal.
    pub fn command(&self) -> String {
        match self {
            Operation::Rerun { schedule, week, .. } => format!("rerun {schedule} {week}"),
            Operation::Backfill {
                schedule,
                range: None,
            } => format!("backfill {schedule}"),
            Operation::Backfill {
                schedule,
                range: Some((from, to)),
            } => format!("backfill {schedule} --from {from} --to {to}"),
            Operation::Cancel { key, fail: false } => format!("cancel {key}"),
            Operation::Cancel { key, fail: true } => format!("cancel {key} --fail"),
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestOutcome {
    /// Done as asked.
    Completed,
    /// Carried out, and something failed (a week, AMC's answer).
    Failed,
    /// Not carried out: what it named does not exist or cannot be done now.
    Refused,
}

impl RequestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Completed => "completed",
            RequestOutcome::Failed => "failed",
            RequestOutcome::Refused => "refused",
        }
    }

    pub fn parse(word: &str) -> Option<RequestOutcome> {
        Some(match word {
            "completed" => RequestOutcome::Completed,
            "failed" => RequestOutcome::Failed,
            "refused" => RequestOutcome::Refused,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestMade {
    pub request: i64,
    pub operation: Operation,
    pub by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestStarted {
    pub request: i64,
    /// The daemon's pid.
    pub pid: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFinished {
    pub request: i64,
    pub outcome: RequestOutcome,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRaised {
    /// UUIDv5 of the cause: what a receiver deduplicates on.
    pub alert: Uuid,
    pub kind: String,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDelivered {
    pub alert: Uuid,
    /// `webhook` or `slack`.
    pub receiver: String,
    /// The HTTP status it answered.
    pub status: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back_as_the_event_it_was_written_from() {
        let event = Event::WeekAdded(WeekAdded {
            collection_id: Uuid::from_u128(7),
            week_start: NaiveDate::from_ymd_opt(2025, 1, 6).unwrap(),
        });
        let text = event.payload_text();
        assert_eq!(
            text,
            r#"{"collection_id":"00000000-0000-0000-0000-000000000007","week_start":"2025-01-06"}"#
        );
        assert_eq!(Event::parse(event.kind(), &text), Ok(event));
    }

    #[test]
    fn an_unknown_kind_and_a_misshapen_payload_are_told_apart() {
        assert_eq!(
            Event::parse("alert.sent", "{}"),
            Err(ParseError::UnknownKind("alert.sent".into()))
        );
        assert!(matches!(
            Event::parse("attempt.status", r#"{"state":"RUNNING"}"#),
            Err(ParseError::Payload { .. })
        ));
    }

    #[test]
    fn older_collection_events_without_ids_still_read() {
        let event = Event::parse(
            "collection.created",
            r#"{"name":"weekly","start_date":"2025-01-06","schedule_file":"a.toml","schedule_hash":"h"}"#,
        )
        .unwrap();
        let Event::CollectionCreated(created) = event else {
            panic!("read as another kind");
        };
        assert_eq!(created.workflow_id, None);
    }
}
