//! Replays the event log into the state it implies: one row per collection,
//! week and execution attempt, with the columns the events determine. The
//! audit compares it with the state tables; lineage uses it to show the
//! values of the state Postgres acknowledged.
//!
//! Owns the replay rules, which mirror `journal::write` (a week's outcome
//! stamps its collection's `journal_seq`; `attempt.status` leaves the week
//! alone; a failed attempt with `week_failed` false puts the week back to
//! pending). A new event kind that changes a state table needs a rule here.

use serde_json::{Value, json};

use crate::journal::{StateRow, StateTables};

/// Event kinds the replay understands; others (added by later versions or
/// other parts, such as scheduler firings) change no state table it checks.
pub const STATE_KINDS: &[&str] = &[
    "collection.created",
    "collection.updated",
    "week.added",
    "attempt.intent",
    "attempt.submitted",
    "attempt.adopted",
    "attempt.status",
    "attempt.succeeded",
    "attempt.failed",
    "attempt.cancelled",
    "attempt.abandoned",
];

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

    /// Applies one event (its `seq`, `kind`, `subject` and stored payload).
    pub fn apply(&mut self, seq: i64, kind: &str, subject: &str, payload: &str) {
        let payload: Value = match serde_json::from_str(payload) {
            Ok(payload) => payload,
            Err(e) => {
                self.problems.push((
                    format!("event {seq}"),
                    format!("its payload is not JSON: {e}"),
                ));
                return;
            }
        };
        let field = |name: &str| payload.get(name).cloned().unwrap_or(Value::Null);
        match kind {
            "collection.created" => {
                let mut row = StateRow::new();
                for key in [
                    "name",
                    "start_date",
                    "schedule_hash",
                    "workflow_id",
                    "instance_id",
                    "schedule_file",
                ] {
                    if let Some(value) = payload.get(key) {
                        row.insert(key, value.clone());
                    }
                }
                if payload.get("workflow_id").is_none() {
                    self.collections_without_ids += 1;
                }
                row.insert("journal_seq", json!(seq));
                self.state
                    .insert(("collection".into(), subject.to_owned()), row);
            }
            "collection.updated" => {
                self.set(
                    "collection",
                    subject,
                    seq,
                    [
                        ("start_date", field("start_date")),
                        ("schedule_hash", field("schedule_hash")),
                    ],
                );
                if let Some(row) = self
                    .state
                    .get_mut(&("collection".to_owned(), subject.to_owned()))
                {
                    for key in ["workflow_id", "instance_id", "schedule_file"] {
                        if let Some(value) = payload.get(key) {
                            row.insert(key, value.clone());
                        }
                    }
                }
                // An older event that lacks these leaves them unknown: not
                // compared, rather than compared with a stale value.
                if payload.get("workflow_id").is_none()
                    && let Some(row) = self
                        .state
                        .get_mut(&("collection".to_owned(), subject.to_owned()))
                {
                    for key in ["workflow_id", "instance_id", "schedule_file"] {
                        row.remove(key);
                    }
                    self.collections_without_ids += 1;
                }
            }
            "week.added" => {
                let row = StateRow::from([
                    ("collection_id", field("collection_id")),
                    ("week_start", field("week_start")),
                    ("status", json!("pending")),
                    ("attempt_id", Value::Null),
                    ("attempts", json!(0)),
                    ("record_count", Value::Null),
                    ("data_checksum", Value::Null),
                    ("journal_seq", json!(seq)),
                ]);
                self.state.insert(("week".into(), subject.to_owned()), row);
            }
            "attempt.intent" => {
                let week = field("week_id").as_str().unwrap_or_default().to_owned();
                let row = StateRow::from([
                    ("week_id", json!(week)),
                    ("state", json!("intent")),
                    ("amc_execution_id", Value::Null),
                    ("amc_status", Value::Null),
                    ("row_count", Value::Null),
                    ("data_checksum", Value::Null),
                    ("error_message", Value::Null),
                    ("triggered_by", field("triggered_by")),
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
            "attempt.submitted" | "attempt.adopted" => {
                self.set(
                    "execution",
                    subject,
                    seq,
                    [
                        ("state", json!("submitted")),
                        ("amc_execution_id", field("amc_execution_id")),
                        ("amc_status", field("status")),
                    ],
                );
                if let Some(week) = self.week_of(subject) {
                    self.set("week", &week, seq, []);
                }
            }
            "attempt.status" => {
                self.set("execution", subject, seq, [("amc_status", field("status"))]);
            }
            "attempt.succeeded" => {
                self.set(
                    "execution",
                    subject,
                    seq,
                    [
                        ("row_count", field("record_count")),
                        ("data_checksum", field("data_checksum")),
                        ("state", json!("succeeded")),
                        ("amc_status", json!("SUCCEEDED")),
                    ],
                );
                if let Some(week) = self.week_of(subject) {
                    self.set(
                        "week",
                        &week,
                        seq,
                        [
                            ("status", json!("completed")),
                            ("error_message", Value::Null),
                            ("record_count", field("record_count")),
                            ("data_checksum", field("data_checksum")),
                        ],
                    );
                    self.touch_collection(&week, seq);
                }
            }
            // A cancel ends the attempt exactly as a failure does
            // (`journal::write::record_ended`); only the kind differs.
            "attempt.failed" | "attempt.cancelled" => {
                self.set(
                    "execution",
                    subject,
                    seq,
                    [
                        ("state", json!("failed")),
                        ("amc_status", field("status")),
                        ("error_message", field("error")),
                    ],
                );
                if let Some(week) = self.week_of(subject) {
                    let failed = field("week_failed").as_bool().unwrap_or(false);
                    let status = if failed { "failed" } else { "pending" };
                    self.set(
                        "week",
                        &week,
                        seq,
                        [("status", json!(status)), ("error_message", field("error"))],
                    );
                    self.touch_collection(&week, seq);
                }
            }
            "attempt.abandoned" => {
                self.set(
                    "execution",
                    subject,
                    seq,
                    [
                        ("state", json!("abandoned")),
                        ("error_message", field("reason")),
                    ],
                );
                if let Some(week) = self.week_of(subject) {
                    self.set("week", &week, seq, [("status", json!("pending"))]);
                }
            }
            _ => {}
        }
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
