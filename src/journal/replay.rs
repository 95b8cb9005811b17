//! Replays the event log into the state it implies: one row per collection,
//! week and execution attempt, with the columns the events determine. The
//! audit compares it with the state tables; lineage uses it to show the
//! values of the state Postgres acknowledged.
//!
//! Owns the replay rules, which mirror the writers in `plan` and
//! `attempts` (a week's outcome stamps its collection's `journal_seq`;
//! `attempt.status` leaves the week alone; a failed attempt with
//! `week_failed` false puts the week back to pending). `apply` matches
//! every [`Event`] kind with no catch-all arm: a new kind does not compile
//! until it has a rule here.

use serde_json::{Value, json};

use super::attach::{IMPORTED, imported_amc_status};
use super::events::{Event, ParseError};
use crate::journal::{StateRow, StateTables};

/// What one event did to the replayed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// It changed (or created) rows of the state tables.
    State,
    /// A scheduler or runner record: it changes no table the replay
    /// checks (the daemon's `schedule_state` is not replayed).
    Record,
    /// A kind this version does not know (a newer chronicle wrote it).
    Unknown,
}

/// The state the event log implies, built event by event.
#[derive(Default)]
pub struct Replay {
    /// The rows the events imply so far.
    pub state: StateTables,
    /// `(subject, detail)` of events that refer to rows the log never
    /// created.
    pub problems: Vec<(String, String)>,
    /// Collection events that predate `workflow_id` and `instance_id` in
    /// the payload: those columns are then not replayed.
    pub collections_without_ids: u64,
}

impl Replay {
    fn row(&mut self, entity: &str, id: &str, seq: i64) -> Option<&mut StateRow> {
        let key = (entity.to_owned(), id.to_owned());
        if !self.state.contains_key(&key) {
            self.problems.push((
                format!("{entity} {id}"),
                format!("event {seq} changes it, but no earlier event created it"),
            ));
            return None;
        }
        self.state.get_mut(&key)
    }

    fn set<const N: usize>(
        &mut self,
        entity: &str,
        id: &str,
        seq: i64,
        fields: [(&'static str, Value); N],
    ) {
        if let Some(row) = self.row(entity, id, seq) {
            row.extend(fields);
            row.insert("journal_seq", json!(seq));
        }
    }

    /// The week whose attempt `attempt_id` is, from the replayed attempt.
    fn week_of(&self, attempt_id: &str) -> Option<String> {
        self.state
            .get(&("execution".to_owned(), attempt_id.to_owned()))
            .and_then(|a| a.get("week_id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn collection_of(&self, week_id: &str) -> Option<String> {
        self.state
            .get(&("week".to_owned(), week_id.to_owned()))
            .and_then(|w| w.get("collection_id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// A week's outcome also stamps its collection (write.rs does the same).
    fn touch_collection(&mut self, week_id: &str, seq: i64) {
        if let Some(collection) = self.collection_of(week_id) {
            self.set("collection", &collection, seq, []);
        }
    }

    /// Applies one stored event (its `seq`, `kind`, `subject` and payload).
    pub fn apply(&mut self, seq: i64, kind: &str, subject: &str, payload: &str) -> Applied {
        match Event::parse(kind, payload) {
            Ok(event) => self.apply_event(seq, subject, &event),
            Err(ParseError::UnknownKind(_)) => Applied::Unknown,
            Err(e) => {
                self.problems.push((format!("event {seq}"), e.to_string()));
                Applied::State
            }
        }
    }

    /// Applies one event.
    pub fn apply_event(&mut self, seq: i64, subject: &str, event: &Event) -> Applied {
        match event {
            Event::CollectionCreated(created) => {
                let mut row = StateRow::from([
                    ("name", json!(created.name)),
                    ("start_date", json!(created.start_date)),
                    ("schedule_hash", json!(created.schedule_hash)),
                    ("schedule_file", json!(created.schedule_file)),
                    ("journal_seq", json!(seq)),
                ]);
                match (&created.workflow_id, &created.instance_id) {
                    (Some(workflow), Some(instance)) => {
                        row.insert("workflow_id", json!(workflow));
                        row.insert("instance_id", json!(instance));
                    }
                    _ => self.collections_without_ids += 1,
                }
                self.state
                    .insert(("collection".into(), subject.to_owned()), row);
            }
            Event::CollectionUpdated(updated) => {
                self.set(
                    "collection",
                    subject,
                    seq,
                    [
                        ("start_date", json!(updated.start_date)),
                        ("schedule_hash", json!(updated.schedule_hash)),
                    ],
                );
                if let Some(row) = self
                    .state
                    .get_mut(&("collection".to_owned(), subject.to_owned()))
                {
                    match (
                        &updated.workflow_id,
                        &updated.instance_id,
                        &updated.schedule_file,
                    ) {
                        (Some(workflow), Some(instance), Some(file)) => {
                            row.insert("workflow_id", json!(workflow));
                            row.insert("instance_id", json!(instance));
                            row.insert("schedule_file", json!(file));
                        }
                        // An older event that lacks these leaves them
                        // unknown: not compared, rather than compared with a
                        // stale value.
                        _ => {
                            for key in ["workflow_id", "instance_id", "schedule_file"] {
                                row.remove(key);
                            }
                            self.collections_without_ids += 1;
                        }
                    }
                }
            }
            Event::WeekAdded(added) => {
                let row = StateRow::from([
                    ("collection_id", json!(added.collection_id)),
                    ("week_start", json!(added.week_start)),
                    ("status", json!("pending")),
                    ("attempt_id", Value::Null),
                    ("attempts", json!(0)),
                    ("record_count", Value::Null),
                    ("data_checksum", Value::Null),
                    ("journal_seq", json!(seq)),
                ]);
                self.state.insert(("week".into(), subject.to_owned()), row);
            }
            Event::WeekImported(imported) => {
                let execution = imported.execution.as_ref();
                let row = StateRow::from([
                    ("collection_id", json!(imported.collection_id)),
                    ("week_start", json!(imported.week_start)),
                    ("status", json!(imported.status)),
                    ("attempt_id", json!(execution.map(|e| e.id))),
                    ("attempts", json!(i64::from(execution.is_some()))),
                    ("record_count", json!(imported.record_count)),
                    ("data_checksum", json!(imported.data_checksum)),
                    ("error_message", json!(imported.error_message)),
                    ("journal_seq", json!(seq)),
                ]);
                self.state.insert(("week".into(), subject.to_owned()), row);
                if let Some(execution) = execution {
                    let row = StateRow::from([
                        ("week_id", json!(subject)),
                        ("state", json!(execution.state)),
                        ("amc_execution_id", json!(execution.amc_execution_id)),
                        ("amc_status", json!(imported_amc_status(&execution.state))),
                        ("row_count", json!(execution.row_count)),
                        ("data_checksum", json!(imported.data_checksum)),
                        ("error_message", Value::Null),
                        ("triggered_by", json!(IMPORTED)),
                        ("superseded", json!(0)),
                        ("journal_seq", json!(seq)),
                    ]);
                    self.state
                        .insert(("execution".into(), execution.id.to_string()), row);
                }
            }
            Event::AttemptIntent(intent) => {
                let week = intent.week_id.to_string();
                let row = StateRow::from([
                    ("week_id", json!(week)),
                    ("state", json!("intent")),
                    ("amc_execution_id", Value::Null),
                    ("amc_status", Value::Null),
                    ("row_count", Value::Null),
                    ("data_checksum", Value::Null),
                    ("error_message", Value::Null),
                    ("triggered_by", json!(intent.triggered_by)),
                    ("superseded", json!(0)),
                    ("journal_seq", json!(seq)),
                ]);
                self.state
                    .insert(("execution".into(), subject.to_owned()), row);
                let attempts = self
                    .state
                    .get(&("week".to_owned(), week.clone()))
                    .and_then(|w| w.get("attempts"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                self.set(
                    "week",
                    &week,
                    seq,
                    [
                        ("status", json!("running")),
                        ("attempt_id", json!(subject)),
                        ("attempts", json!(attempts + 1)),
                        ("error_message", Value::Null),
                    ],
                );
            }
            Event::AttemptSubmitted(submitted) | Event::AttemptAdopted(submitted) => {
                self.set(
                    "execution",
                    subject,
                    seq,
                    [
                        ("state", json!("submitted")),
                        ("amc_execution_id", json!(submitted.amc_execution_id)),
                        ("amc_status", json!(submitted.status)),
                    ],
                );
                if let Some(week) = self.week_of(subject) {
                    self.set("week", &week, seq, []);
                }
            }
            Event::AttemptStatus(status) => {
                self.set(
                    "execution",
                    subject,
                    seq,
                    [("amc_status", json!(status.status))],
                );
            }
            Event::AttemptSucceeded(succeeded) => {
                self.set(
                    "execution",
                    subject,
                    seq,
                    [
                        ("row_count", json!(succeeded.record_count)),
                        ("data_checksum", json!(succeeded.data_checksum)),
                        ("state", json!("succeeded")),
                        ("amc_status", json!("SUCCEEDED")),
                    ],
                );
                if let (Some(digest), Some(row)) = (
                    &succeeded.result_digest,
                    self.state
                        .get_mut(&("execution".to_owned(), subject.to_owned())),
                ) {
                    row.insert("result_digest", json!(digest));
                }
                if let Some(week) = self.week_of(subject) {
                    self.set(
                        "week",
                        &week,
                        seq,
                        [
                            ("status", json!("completed")),
                            ("error_message", Value::Null),
                            ("record_count", json!(succeeded.record_count)),
                            ("data_checksum", json!(succeeded.data_checksum)),
                        ],
                    );
                    self.touch_collection(&week, seq);
                }
            }
            // A cancel ends the attempt exactly as a failure does
            // (`attempts::record_ended`); only the kind differs.
            Event::AttemptFailed(ended) | Event::AttemptCancelled(ended) => {
                self.set(
                    "execution",
                    subject,
                    seq,
                    [
                        ("state", json!("failed")),
                        ("amc_status", json!(ended.status)),
                        ("error_message", json!(ended.error)),
                    ],
                );
                if let Some(week) = self.week_of(subject) {
                    let status = if ended.week_failed {
                        "failed"
                    } else {
                        "pending"
                    };
                    self.set(
                        "week",
                        &week,
                        seq,
                        [
                            ("status", json!(status)),
                            ("error_message", json!(ended.error)),
                        ],
                    );
                    self.touch_collection(&week, seq);
                }
            }
            Event::AttemptAbandoned(abandoned) => {
                self.set(
                    "execution",
                    subject,
                    seq,
                    [
                        ("state", json!("abandoned")),
                        ("error_message", json!(abandoned.reason)),
                    ],
                );
                if let Some(week) = self.week_of(subject) {
                    self.set("week", &week, seq, [("status", json!("pending"))]);
                }
            }
            // The week is pending again; its attempt until now is kept,
            // marked superseded (`rerun::record_rerun`).
            Event::WeekRerunRequested(rerun) => {
                if let Some(attempt) = rerun.superseded_attempt {
                    self.set(
                        "execution",
                        &attempt.to_string(),
                        seq,
                        [("superseded", json!(1))],
                    );
                }
                self.set(
                    "week",
                    subject,
                    seq,
                    [("status", json!("pending")), ("error_message", Value::Null)],
                );
                self.touch_collection(subject, seq);
            }
            // Leaves the attempt as it was; only its reason is recorded.
            Event::AttemptUnresolved(_)
            | Event::RunnerStarted(_)
            | Event::ScheduleArmed(_)
            | Event::ScheduleFiring(_)
            | Event::ScheduleRunFinished(_)
            | Event::SchedulePaused(_)
            | Event::ScheduleResumed(_)
            | Event::SchedulesReloaded(_)
            | Event::DaemonStopped(_)
            // Requests and alerts are the operator's record: their tables
            // are bookkeeping the replay does not check.
            | Event::RequestMade(_)
            | Event::RequestStarted(_)
            | Event::RequestFinished(_)
            | Event::AlertRaised(_)
            | Event::AlertDelivered(_) => return Applied::Record,
        }
        Applied::State
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_older_events_lack_are_left_unknown_rather_than_stale() {
        let mut replay = Replay::default();
        replay.apply(
            1,
            "collection.created",
            "c",
            r#"{"name":"weekly","start_date":"2025-01-06","schedule_file":"a.toml","schedule_hash":"h1"}"#,
        );
        replay.apply(
            2,
            "collection.updated",
            "c",
            r#"{"start_date":"2024-12-30","previous_start_date":"2025-01-06","schedule_hash":"h2"}"#,
        );
        let row = &replay.state[&("collection".to_owned(), "c".to_owned())];
        assert_eq!(row["start_date"], "2024-12-30");
        assert_eq!(row["schedule_hash"], "h2");
        assert_eq!(row["journal_seq"], 2);
        for unknown in ["workflow_id", "instance_id", "schedule_file"] {
            assert!(!row.contains_key(unknown), "{unknown} should be unknown");
        }
        assert_eq!(replay.collections_without_ids, 2);
        assert!(replay.problems.is_empty());
    }

    #[test]
    fn an_event_about_a_row_no_event_created_is_a_problem() {
        let mut replay = Replay::default();
        replay.apply(5, "attempt.status", "a", r#"{"status":"RUNNING"}"#);
        assert_eq!(
            replay.problems,
            vec![(
                "execution a".to_owned(),
                "event 5 changes it, but no earlier event created it".to_owned()
            )]
        );
    }
}
