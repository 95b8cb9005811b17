//! `chronicle lineage`: everything recorded about a week, found by week
//! date, week id, attempt id or AMC execution id: its collection and
//! schedule, every attempt, every event, and what Postgres holds of each.
//!
//! Owns the query. The values Postgres holds are filled in from the replay
//! by `cli::inspect`.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use uuid::Uuid;

use chrono::NaiveDate;

use super::super::outbox::{Entity, waiting_since};
use super::super::sql::{collect_strings, date_at, parse_date, uuid_at};
use super::super::{Journal, Result};

#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub id: Uuid,
    pub state: String,
    pub amc_execution_id: Option<String>,
    pub amc_status: Option<String>,
    pub request: serde_json::Value,
    pub triggered_by: String,
    pub row_count: Option<i64>,
    pub data_checksum: Option<String>,
    pub error_message: Option<String>,
    pub created_at: String,
    pub submitted_at: Option<String>,
    pub completed_at: Option<String>,
    /// When a re-run a person asked for superseded it (the week ran again;
    /// this attempt is kept as it was).
    pub superseded_at: Option<String>,
    /// The schedule file's sha256 when this attempt was made (schedules
    /// change; the collection keeps only the latest hash).
    pub schedule_hash_at_intent: Option<String>,
    /// What Postgres holds of this execution; `None` when it holds nothing
    /// (AMC never held the attempt, or its first change still waits).
    pub postgres: Option<SyncedValues>,
}

/// What Postgres holds of a row, as far as the journal knows: the reconciler
/// sends a row's current state and its outbox entries leave only once
/// Postgres committed, so a row with nothing waiting is held as it is now.
#[derive(Debug, Clone, Serialize)]
pub struct SyncedValues {
    /// The first change Postgres has not acknowledged (in the outbox or in
    /// quarantine); `None` when Postgres holds the current state.
    pub waiting_since_seq: Option<i64>,
    /// True when the values are exactly what Postgres holds; false when a
    /// change waits, so Postgres holds these or a later state.
    pub exact: bool,
    /// The `journal_seq` of the state shown (filled in with `values`).
    pub journal_seq: Option<i64>,
    /// The tracking values of that state, replayed from the events
    /// (filled in by `inspect::lineage`).
    pub values: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WeekView {
    pub id: Uuid,
    pub collection: String,
    /// The collection's UUIDv5 and what it runs: the chain's top link.
    pub collection_id: String,
    pub workflow_id: String,
    pub instance_id: String,
    pub collection_start: String,
    pub schedule_file: String,
    pub schedule_hash: String,
    pub week_start: NaiveDate,
    pub status: String,
    pub record_count: Option<i64>,
    pub data_checksum: Option<String>,
    pub error_message: Option<String>,
    /// False while a change of this week waits in the outbox.
    pub synced: bool,
    /// What Postgres holds of this week; `None` when it holds nothing yet.
    pub postgres: Option<SyncedValues>,
    pub attempts: Vec<AttemptView>,
    /// `(seq, at, kind, subject, payload)` of every event about the week or
    /// its attempts.
    pub events: Vec<(i64, String, String, String, String)>,
}

/// Every week an id or date leads to (a date may match one week per schedule).
#[derive(Debug, Clone, Serialize)]
pub struct Lineage {
    pub weeks: Vec<WeekView>,
}

impl Journal {
    /// Resolves a week date, week id, attempt id or AMC execution id to the
    /// weeks it names, with their whole recorded history.
    pub fn lineage(&self, key: &str) -> Result<Lineage> {
        let connection = self.lock();
        let sqlite = |e| self.sqlite(e);
        let week_ids: Vec<String> = if let Some(date) = parse_date(key) {
            collect_strings(
                &connection,
                "SELECT id FROM weeks WHERE week_start = ?1 ORDER BY collection_id",
                &date.to_string(),
            )
        } else {
            collect_strings(
                &connection,
                "SELECT id FROM weeks WHERE id = ?1
                 UNION SELECT week_id FROM attempts WHERE id = ?1 OR amc_execution_id = ?1",
                key,
            )
        }
        .map_err(sqlite)?;
        let weeks = week_ids
            .iter()
            .map(|id| week_view(&connection, id))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sqlite)?;
        Ok(Lineage { weeks })
    }
}

fn synced(
    connection: &Connection,
    entity: Entity,
    id: &str,
) -> rusqlite::Result<Option<SyncedValues>> {
    let waiting = waiting_since(connection, entity, id)?;
    Ok(Some(SyncedValues {
        waiting_since_seq: waiting,
        exact: waiting.is_none(),
        journal_seq: None,
        values: None,
    }))
}

fn week_view(connection: &Connection, id: &str) -> rusqlite::Result<WeekView> {
    let mut view = connection.query_row(
        "SELECT w.id, c.name, c.schedule_file, c.schedule_hash, w.week_start, w.status,
            w.record_count, w.data_checksum, w.error_message,
            NOT EXISTS (SELECT 1 FROM outbox o WHERE o.entity = 'week' AND o.entity_id = w.id)
            AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.entity = 'week' AND q.entity_id = w.id),
            c.id, c.workflow_id, c.instance_id, c.start_date
         FROM weeks w JOIN collections c ON c.id = w.collection_id WHERE w.id = ?1",
        [id],
        |row| {
            Ok(WeekView {
                id: uuid_at(row, 0)?,
                collection: row.get(1)?,
                schedule_file: row.get(2)?,
                schedule_hash: row.get(3)?,
                week_start: date_at(row, 4)?,
                status: row.get(5)?,
                record_count: row.get(6)?,
                data_checksum: row.get(7)?,
                error_message: row.get(8)?,
                synced: row.get(9)?,
                collection_id: row.get(10)?,
                workflow_id: row.get(11)?,
                instance_id: row.get(12)?,
                collection_start: row.get(13)?,
                postgres: None,
                attempts: Vec::new(),
                events: Vec::new(),
            })
        },
    )?;
    let mut attempts = connection.prepare(
        "SELECT id, state, amc_execution_id, amc_status, request, triggered_by, row_count,
            data_checksum, error_message, created_at, submitted_at, completed_at, superseded_at
         FROM attempts WHERE week_id = ?1 ORDER BY created_at, id",
    )?;
    view.attempts = attempts
        .query_map([id], |row| {
            let request: String = row.get(4)?;
            Ok(AttemptView {
                id: uuid_at(row, 0)?,
                state: row.get(1)?,
                amc_execution_id: row.get(2)?,
                amc_status: row.get(3)?,
                request: serde_json::from_str(&request)
                    .unwrap_or(serde_json::Value::String(request)),
                triggered_by: row.get(5)?,
                row_count: row.get(6)?,
                data_checksum: row.get(7)?,
                error_message: row.get(8)?,
                created_at: row.get(9)?,
                submitted_at: row.get(10)?,
                completed_at: row.get(11)?,
                superseded_at: row.get(12)?,
                schedule_hash_at_intent: None,
                postgres: None,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    view.postgres = synced(connection, Entity::Week, id)?;
    let mut hash_at = connection.prepare(
        "SELECT json_extract(payload, '$.schedule_hash') FROM events
         WHERE subject = ?1 AND kind IN ('collection.created', 'collection.updated')
           AND seq <= (SELECT min(seq) FROM events WHERE subject = ?2)
         ORDER BY seq DESC LIMIT 1",
    )?;
    for attempt in &mut view.attempts {
        let attempt_id = attempt.id.to_string();
        attempt.postgres = synced(connection, Entity::Execution, &attempt_id)?;
        attempt.schedule_hash_at_intent = hash_at
            .query_row(params![view.collection_id, attempt_id], |row| row.get(0))
            .optional()?
            .flatten();
    }
    let mut events = connection.prepare(
        "SELECT seq, at, kind, subject, payload FROM events
         WHERE subject = ?1 OR subject IN (SELECT id FROM attempts WHERE week_id = ?1)
         ORDER BY seq",
    )?;
    view.events = events
        .query_map(params![id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(view)
}
