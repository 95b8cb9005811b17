//! `chronicle audit`: proves the journal from its own record. Three checks:
//! the hash chain (the first broken event), the state tables against the
//! state the event log implies (replayed here), and, when Postgres is
//! configured, the drift comparison of `verify` plus the chain heads
//! Postgres recorded at each sync.
//!
//! Owns the replay rules and the findings. Reading is the journal's and the
//! warehouse's; the row comparison with Postgres is `drift`'s.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

use crate::journal::{ChainHead, Event, EventFilter, Journal, JournalError, StateTables};

/// One thing the audit could not reconcile.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `chain`, `state`, `postgres` or `chain head`.
    pub check: &'static str,
    /// The event, row or head at fault.
    pub subject: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct AuditReport {
    pub journal_id: String,
    pub head: Option<ChainHead>,
    pub events: i64,
    pub findings: Vec<Finding>,
    /// What could not be checked and why (old journals, unknown kinds, no
    /// Postgres): never findings, but an auditor must know.
    pub notes: Vec<String>,
}

impl AuditReport {
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Event kinds the replay understands; others (added by later versions or
/// other parts, such as scheduler firings) change no state table it checks.
const STATE_KINDS: &[&str] = &[
    "collection.created",
    "collection.updated",
    "week.added",
    "attempt.intent",
    "attempt.submitted",
    "attempt.adopted",
    "attempt.status",
    "attempt.succeeded",
    "attempt.failed",
    "attempt.abandoned",
];

/// Checks the chain and replays the log against the state tables.
pub fn journal(journal: &Journal) -> Result<AuditReport, JournalError> {
    let mut report = AuditReport {
        journal_id: journal.journal_id()?,
        head: journal.chain_head()?,
        ..AuditReport::default()
    };
    if let Some(broken) = journal.verify_chain()? {
        report.findings.push(Finding {
            check: "chain",
            subject: format!("event {}", broken.seq),
            detail: broken.why,
        });
    }
    let mut replay = Replay::default();
    let mut unknown: BTreeMap<String, u64> = BTreeMap::new();
    report.events = journal.each_event(&EventFilter::default(), |event: Event| {
        if STATE_KINDS.contains(&event.kind.as_str()) {
            replay.apply(&event);
        } else if event.kind != "runner.started" {
            *unknown.entry(event.kind).or_default() += 1;
        }
        Ok::<(), JournalError>(())
    })?;
    for (kind, count) in unknown {
        report.notes.push(format!(
            "{count} `{kind}` events change no state table the replay checks"
        ));
    }
    for problem in &replay.problems {
        report.findings.push(Finding {
            check: "state",
            subject: problem.0.clone(),
            detail: problem.1.clone(),
        });
    }
    if replay.collections_without_ids > 0 {
        report.notes.push(format!(
            "{} collections were created by an older chronicle whose events lack workflow_id and instance_id: those columns are not checked for them",
            replay.collections_without_ids
        ));
    }
    compare_state(&replay.state, &journal.state_tables()?, &mut report);
    Ok(report)
}

/// Adds the findings of comparing the chain heads Postgres recorded for
/// this journal (`heads`) with the journal's events. `others` says whether
/// Postgres holds heads of other journals.
pub fn chain_heads(
    journal: &Journal,
    heads: &[ChainHead],
    others: bool,
    report: &mut AuditReport,
) -> Result<(), JournalError> {
    if heads.is_empty() {
        if others {
            report.findings.push(Finding {
                check: "chain head",
                subject: format!("journal {}", report.journal_id),
                detail: "Postgres holds chain heads of other journals but none of this one: was the journal replaced?".into(),
            });
        } else {
            report.notes.push(
                "Postgres holds no chain head yet (no sync since chain heads were introduced)"
                    .into(),
            );
        }
        return Ok(());
    }
    for head in heads {
        match journal.event_hash(head.seq)? {
            None => report.findings.push(Finding {
                check: "chain head",
                subject: format!("event {}", head.seq),
                detail: format!(
                    "Postgres saw the chain reach event {} ({}); the journal no longer holds it",
                    head.seq, head.hash
                ),
            }),
            Some(hash) if hash != head.hash => report.findings.push(Finding {
                check: "chain head",
                subject: format!("event {}", head.seq),
                detail: format!(
                    "Postgres recorded hash {} for event {}; the journal now has {hash}: the chain was rewritten",
                    head.hash, head.seq
                ),
            }),
            Some(_) => {}
        }
    }
    Ok(())
}

/// The state the event log implies, built event by event.
#[derive(Default)]
struct Replay {
    state: StateTables,
    /// `(subject, detail)` of events that refer to rows the log never
    /// created.
    problems: Vec<(String, String)>,
    collections_without_ids: u64,
}

impl Replay {
    fn row(&mut self, entity: &str, id: &str, seq: i64) -> Option<&mut BTreeMap<String, Value>> {
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

    fn set(&mut self, entity: &str, id: &str, seq: i64, fields: Value) {
        if let (Some(row), Value::Object(fields)) = (self.row(entity, id, seq), fields) {
            row.extend(fields);
            row.insert("journal_seq".into(), json!(seq));
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
            self.set("collection", &collection, seq, json!({}));
        }
    }

    fn apply(&mut self, event: &Event) {
        let payload: Value = match serde_json::from_str(&event.payload) {
            Ok(payload) => payload,
            Err(e) => {
                self.problems.push((
                    format!("event {}", event.seq),
                    format!("its payload is not JSON: {e}"),
                ));
                return;
            }
        };
        let field = |name: &str| payload.get(name).cloned().unwrap_or(Value::Null);
        let (seq, subject) = (event.seq, event.subject.as_str());
        match event.kind.as_str() {
            "collection.created" => {
                let mut row = BTreeMap::new();
                for key in [
                    "name",
                    "start_date",
                    "schedule_hash",
                    "workflow_id",
                    "instance_id",
                ] {
                    if let Some(value) = payload.get(key) {
                        row.insert(key.to_owned(), value.clone());
                    }
                }
                if payload.get("workflow_id").is_none() {
                    self.collections_without_ids += 1;
                }
                row.insert("journal_seq".into(), json!(seq));
                self.state
                    .insert(("collection".into(), subject.to_owned()), row);
            }
            "collection.updated" => {
                let mut fields = json!({
                    "start_date": field("start_date"),
                    "schedule_hash": field("schedule_hash"),
                });
                for key in ["workflow_id", "instance_id"] {
                    if let Some(value) = payload.get(key) {
                        fields[key] = value.clone();
                    }
                }
                self.set("collection", subject, seq, fields);
            }
            "week.added" => {
                let row = json!({
                    "collection_id": field("collection_id"),
                    "week_start": field("week_start"),
                    "status": "pending",
                    "attempt_id": null,
                    "attempts": 0,
                    "record_count": null,
                    "data_checksum": null,
                    "journal_seq": seq,
                });
                if let Value::Object(row) = row {
                    self.state.insert(
                        ("week".into(), subject.to_owned()),
                        row.into_iter().collect(),
                    );
                }
            }
            "attempt.intent" => {
                let week = field("week_id").as_str().unwrap_or_default().to_owned();
                let row = json!({
                    "week_id": week,
                    "state": "intent",
                    "amc_execution_id": null,
                    "amc_status": null,
                    "row_count": null,
                    "data_checksum": null,
                    "journal_seq": seq,
                });
                if let Value::Object(row) = row {
                    self.state.insert(
                        ("execution".into(), subject.to_owned()),
                        row.into_iter().collect(),
                    );
                }
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
                    json!({"status": "running", "attempt_id": subject, "attempts": attempts + 1}),
                );
            }
            "attempt.submitted" | "attempt.adopted" => {
                self.set(
                    "execution",
                    subject,
                    seq,
                    json!({
                        "state": "submitted",
                        "amc_execution_id": field("amc_execution_id"),
                        "amc_status": field("status"),
                    }),
                );
                if let Some(week) = self.week_of(subject) {
                    self.set("week", &week, seq, json!({}));
                }
            }
            "attempt.status" => {
                self.set(
                    "execution",
                    subject,
                    seq,
                    json!({"amc_status": field("status")}),
                );
            }
            "attempt.succeeded" => {
                let outcome = json!({
                    "row_count": field("record_count"),
                    "data_checksum": field("data_checksum"),
                });
                let mut attempt = outcome.clone();
                attempt["state"] = json!("succeeded");
                attempt["amc_status"] = json!("SUCCEEDED");
                self.set("execution", subject, seq, attempt);
                if let Some(week) = self.week_of(subject) {
                    self.set(
                        "week",
                        &week,
                        seq,
                        json!({
                            "status": "completed",
                            "record_count": field("record_count"),
                            "data_checksum": field("data_checksum"),
                        }),
                    );
                    self.touch_collection(&week, seq);
                }
            }
            "attempt.failed" => {
                self.set(
                    "execution",
                    subject,
                    seq,
                    json!({"state": "failed", "amc_status": field("status")}),
                );
                if let Some(week) = self.week_of(subject) {
                    let failed = field("week_failed").as_bool().unwrap_or(false);
                    let status = if failed { "failed" } else { "pending" };
                    self.set("week", &week, seq, json!({"status": status}));
                    self.touch_collection(&week, seq);
                }
            }
            "attempt.abandoned" => {
                self.set("execution", subject, seq, json!({"state": "abandoned"}));
                if let Some(week) = self.week_of(subject) {
                    self.set("week", &week, seq, json!({"status": "pending"}));
                }
            }
            _ => {}
        }
    }
}

/// Names every row that is in one place and not the other, and every
/// column whose table value differs from the replayed one. Columns the log
/// does not carry for a row (old journals) are not compared.
fn compare_state(replayed: &StateTables, tables: &StateTables, report: &mut AuditReport) {
    let keys: BTreeSet<_> = replayed.keys().chain(tables.keys()).collect();
    for key in keys {
        let subject = format!("{} {}", key.0, key.1);
        match (replayed.get(key), tables.get(key)) {
            (Some(_), None) => report.findings.push(Finding {
                check: "state",
                subject,
                detail: "the event log creates this row; the state tables do not hold it".into(),
            }),
            (None, Some(_)) => report.findings.push(Finding {
                check: "state",
                subject,
                detail: "the state tables hold this row; no event created it".into(),
            }),
            (Some(expected), Some(actual)) => {
                let differing: Vec<String> = expected
                    .iter()
                    .filter(|(column, value)| {
                        actual.get(*column).is_some_and(|stored| stored != *value)
                    })
                    .map(|(column, value)| {
                        format!(
                            "{column}: the log says {value}, the table holds {}",
                            actual[column]
                        )
                    })
                    .collect();
                if !differing.is_empty() {
                    report.findings.push(Finding {
                        check: "state",
                        subject,
                        detail: differing.join("; "),
                    });
                }
            }
            (None, None) => {}
        }
    }
}
