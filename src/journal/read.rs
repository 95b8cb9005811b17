//! Queries: the work planning hands the runner, the tracking rows the
//! reconciler sends, and the views `status` and `lineage` print.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use uuid::Uuid;

use super::{
    ChainBreak, Journal, OpenAttempt, Phase, Result, WorkItem, chain, parse_date, parse_timestamp,
};
use crate::amc::{CreateExecution, Status};
use crate::schedule::week;
use crate::warehouse::rows::{Batch, CollectionRow, ExecutionRow, WeekRow};

/// One change waiting for Postgres: which row, and the sequence number of
/// the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Position in the outbox log: what acknowledging deletes.
    pub id: i64,
    pub entity: String,
    pub entity_id: String,
    pub seq: i64,
}

/// A batch read from the outbox, with the entries to acknowledge once
/// Postgres has committed it.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    pub batch: Batch,
    pub entries: Vec<OutboxEntry>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A row Postgres refused, as `chronicle quarantine` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Quarantined {
    pub id: i64,
    pub entity: String,
    pub entity_id: String,
    pub error: String,
    pub quarantined_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CollectionSummary {
    pub name: String,
    pub workflow_id: String,
    pub instance_id: String,
    pub start_date: NaiveDate,
    pub weeks_by_status: BTreeMap<String, i64>,
    pub live_executions: i64,
    pub rows_collected: i64,
}

/// The last time a runner (`run`, `backfill`, `demo`) started on this journal.
#[derive(Debug, Clone, Serialize)]
pub struct RunnerStart {
    pub at: String,
    pub command: String,
    /// Attempts left open by an earlier process, resumed by this one.
    pub recovered: i64,
    /// Executions found by listing AMC after their create answer was lost.
    pub adopted: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub journal: String,
    /// `wal` when the journal is crash safe as I1 requires.
    pub journal_mode: String,
    /// `FULL` when every commit is fsynced.
    pub synchronous: String,
    pub last_start: Option<RunnerStart>,
    pub collections: Vec<CollectionSummary>,
    pub pending_sync: i64,
    /// When the oldest change still waiting for Postgres was made.
    pub oldest_pending_since: Option<String>,
    /// Rows Postgres refused; `chronicle quarantine` lists them.
    pub quarantined: i64,
    pub last_sync_success: Option<String>,
    pub last_sync_error: Option<String>,
    pub executions: i64,
}

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

fn uuid_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Uuid> {
    let text: String = row.get(index)?;
    Uuid::parse_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn date_at(row: &Row<'_>, index: usize) -> rusqlite::Result<NaiveDate> {
    let text: String = row.get(index)?;
    parse_date(&text).ok_or_else(|| bad_value(index, &text))
}

fn time_at(row: &Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text: String = row.get(index)?;
    parse_timestamp(&text).ok_or_else(|| bad_value(index, &text))
}

fn optional_time_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let text: Option<String> = row.get(index)?;
    text.map(|t| parse_timestamp(&t).ok_or_else(|| bad_value(index, &t)))
        .transpose()
}

fn bad_value(index: usize, text: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        index,
        rusqlite::types::Type::Text,
        format!("`{text}` is not a valid value for this column").into(),
    )
}

fn request_at(row: &Row<'_>, index: usize) -> rusqlite::Result<CreateExecution> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) const OPEN_ATTEMPT_COLUMNS: &str =
    "a.id, a.week_id, a.state, a.amc_execution_id, a.amc_status, a.request, a.created_at";

impl Journal {
    /// Weeks of a collection that are not completed, oldest first, each with
    /// the attempt an earlier process left unfinished, if any. The statuses
    /// are named and the (collection_id, status) index is required, so only
    /// these weeks are read: left to itself SQLite walks the collection's
    /// whole history in week order to save a sort (BENCHMARKS.md, scale).
    pub fn work(&self, collection_id: Uuid) -> Result<Vec<WorkItem>> {
        let connection = self.lock();
        let query = format!(
            "SELECT w.id, w.week_start, {OPEN_ATTEMPT_COLUMNS}
             FROM weeks w INDEXED BY weeks_by_status_rows
             LEFT JOIN attempts a ON a.id = w.attempt_id AND a.state IN ('intent', 'submitted')
             WHERE w.collection_id = ?1 AND w.status IN ('pending', 'running', 'failed')
             ORDER BY w.week_start"
        );
        let mut statement = connection.prepare(&query).map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([collection_id.to_string()], |row| {
                let attempt_id: Option<String> = row.get(2)?;
                Ok(WorkItem {
                    week_id: uuid_at(row, 0)?,
                    week_start: date_at(row, 1)?,
                    open_attempt: match attempt_id {
                        None => None,
                        Some(_) => Some(open_attempt_offset(row, 2)?),
                    },
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

    /// Up to `limit` changed rows from the outbox, oldest change first, with
    /// the parents they reference.
    pub fn pending(&self, limit: usize) -> Result<Pending> {
        let entries = {
            let connection = self.lock();
            let mut statement = connection
                .prepare_cached(
                    "SELECT id, entity, entity_id, seq FROM outbox ORDER BY id LIMIT ?1",
                )
                .map_err(|e| self.sqlite(e))?;
            let rows = statement
                .query_map([limit as i64], |row| {
                    Ok(OutboxEntry {
                        id: row.get(0)?,
                        entity: row.get(1)?,
                        entity_id: row.get(2)?,
                        seq: row.get(3)?,
                    })
                })
                .map_err(|e| self.sqlite(e))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| self.sqlite(e))?
        };
        let batch = self.batch_for(&entries)?;
        Ok(Pending { batch, entries })
    }

    /// The current state of the rows `entries` name, plus the parents they
    /// reference, so foreign keys hold within one Postgres transaction.
    pub fn batch_for(&self, entries: &[OutboxEntry]) -> Result<Batch> {
        let mut connection = self.lock();
        // One read transaction: rows and their parents from one snapshot.
        let tx = connection.transaction().map_err(|e| self.sqlite(e))?;
        let mut collections = BTreeSet::new();
        let mut executions = BTreeSet::new();
        let mut weeks = BTreeSet::new();
        for entry in entries {
            let id = entry.entity_id.clone();
            match entry.entity.as_str() {
                "collection" => collections.insert(id),
                "execution" => executions.insert(id),
                "week" => weeks.insert(id),
                other => return Err(self.invalid(format!("outbox holds unknown entity `{other}`"))),
            };
        }
        rows_with_parents(&tx, collections, executions, weeks).map_err(|e| self.sqlite(e))
    }

    /// Every tracking row the journal holds: what Postgres should equal.
    pub fn all_rows(&self) -> Result<Batch> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(|e| self.sqlite(e))?;
        let ids = |sql: &str| -> rusqlite::Result<BTreeSet<String>> {
            let mut statement = tx.prepare(sql)?;
            let rows = statement.query_map([], |row| row.get(0))?;
            rows.collect()
        };
        let collections = ids("SELECT id FROM collections").map_err(|e| self.sqlite(e))?;
        let executions = ids("SELECT id FROM attempts").map_err(|e| self.sqlite(e))?;
        let weeks = ids("SELECT id FROM weeks").map_err(|e| self.sqlite(e))?;
        rows_with_parents(&tx, collections, executions, weeks).map_err(|e| self.sqlite(e))
    }

    /// `(entity, id)` of rows Postgres has not seen in their current state:
    /// waiting in the outbox or quarantined.
    pub fn unsynced(&self) -> Result<BTreeSet<(String, String)>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(
                "SELECT entity, entity_id FROM outbox
                 UNION SELECT entity, entity_id FROM quarantine",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<rusqlite::Result<BTreeSet<_>>>()
            .map_err(|e| self.sqlite(e))
    }

    pub fn quarantined(&self) -> Result<Vec<Quarantined>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(
                "SELECT id, entity, entity_id, error, quarantined_at FROM quarantine ORDER BY id",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok(Quarantined {
                    id: row.get(0)?,
                    entity: row.get(1)?,
                    entity_id: row.get(2)?,
                    error: row.get(3)?,
                    quarantined_at: row.get(4)?,
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sqlite(e))
    }

    pub fn pending_count(&self) -> Result<i64> {
        let connection = self.lock();
        connection
            .query_row("SELECT count(*) FROM outbox", [], |row| row.get(0))
            .map_err(|e| self.sqlite(e))
    }

    pub fn status(&self) -> Result<StatusReport> {
        let connection = self.lock();
        let sqlite = |e| self.sqlite(e);
        let mut statement = connection
            .prepare(
                "SELECT c.id, c.name, c.workflow_id, c.instance_id, c.start_date,
                    (SELECT count(*) FROM attempts a JOIN weeks w ON w.id = a.week_id
                      WHERE w.collection_id = c.id AND a.state IN ('intent', 'submitted')),
                    (SELECT coalesce(sum(records), 0) FROM week_totals t
                      WHERE t.collection_id = c.id AND t.status = 'completed')
                 FROM collections c ORDER BY c.name",
            )
            .map_err(sqlite)?;
        let mut collections = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    CollectionSummary {
                        name: row.get(1)?,
                        workflow_id: row.get(2)?,
                        instance_id: row.get(3)?,
                        start_date: date_at(row, 4)?,
                        weeks_by_status: BTreeMap::new(),
                        live_executions: row.get(5)?,
                        rows_collected: row.get(6)?,
                    },
                ))
            })
            .map_err(sqlite)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sqlite)?;
        // Totals kept by V7's triggers: reading them costs the same after 20
        // years as after one week (BENCHMARKS.md, scale).
        let mut counts = connection
            .prepare("SELECT status, weeks FROM week_totals WHERE collection_id = ?1")
            .map_err(sqlite)?;
        for (id, summary) in &mut collections {
            for status in ["pending", "running", "completed", "failed"] {
                summary.weeks_by_status.insert(status.to_owned(), 0);
            }
            let rows = counts
                .query_map([id.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(sqlite)?;
            for row in rows {
                let (status, count): (String, i64) = row.map_err(sqlite)?;
                summary.weeks_by_status.insert(status, count);
            }
        }
        let (last_success, last_error): (Option<String>, Option<String>) = connection
            .query_row(
                "SELECT last_success_at, last_error FROM sync_state WHERE id = 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(sqlite)?;
        let (pending_sync, oldest_pending_since) = connection
            .query_row("SELECT count(*), min(queued_at) FROM outbox", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(sqlite)?;
        let quarantined = connection
            .query_row("SELECT count(*) FROM quarantine", [], |row| row.get(0))
            .map_err(sqlite)?;
        let executions = connection
            .query_row(
                "SELECT executions FROM journal_totals WHERE id = 1",
                [],
                |row| row.get(0),
            )
            .map_err(sqlite)?;
        let journal_mode: String = connection
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .map_err(sqlite)?;
        let synchronous: i64 = connection
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .map_err(sqlite)?;
        let last_start = connection
            .query_row(
                "SELECT at, json_extract(payload, '$.command'),
                    json_extract(payload, '$.open_attempts'),
                    (SELECT count(*) FROM events a WHERE a.kind = 'attempt.adopted' AND a.seq > e.seq)
                 FROM events e WHERE kind = 'runner.started' ORDER BY seq DESC LIMIT 1",
                [],
                |row| {
                    Ok(RunnerStart {
                        at: row.get(0)?,
                        command: row.get(1)?,
                        recovered: row.get(2)?,
                        adopted: row.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(sqlite)?;
        Ok(StatusReport {
            journal: self.path.display().to_string(),
            journal_mode,
            synchronous: match synchronous {
                0 => "OFF",
                1 => "NORMAL",
                2 => "FULL",
                3 => "EXTRA",
                _ => "unknown",
            }
            .to_owned(),
            last_start,
            collections: collections.into_iter().map(|(_, s)| s).collect(),
            pending_sync,
            oldest_pending_since,
            quarantined,
            last_sync_success: last_success,
            last_sync_error: last_error,
            executions,
        })
    }

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

    /// The first event where the hash chain breaks, if any (I6).
    pub fn verify_chain(&self) -> Result<Option<ChainBreak>> {
        let connection = self.lock();
        chain::verify(&connection).map_err(|e| self.sqlite(e))
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

fn rows_with_parents(
    connection: &Connection,
    mut collections: BTreeSet<String>,
    mut executions: BTreeSet<String>,
    weeks: BTreeSet<String>,
) -> rusqlite::Result<Batch> {
    let week_rows = week_rows(connection, &weeks)?;
    for week in &week_rows {
        collections.insert(week.collection_id.to_string());
        if let Some(execution) = week.execution_id {
            executions.insert(execution.to_string());
        }
    }
    Ok(Batch {
        collections: collection_rows(connection, &collections)?,
        executions: execution_rows(connection, &executions)?,
        weeks: week_rows,
    })
}

/// Reads the rows with these ids in one statement: the ids travel as one
/// JSON array, so a batch costs one query, not one per row.
fn rows_by_id<T>(
    connection: &Connection,
    sql: &str,
    ids: &BTreeSet<String>,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids = serde_json::to_string(ids).expect("strings always serialize");
    let mut statement = connection.prepare_cached(sql)?;
    let rows = statement.query_map([ids], map)?;
    rows.collect()
}

fn collect_strings(connection: &Connection, sql: &str, key: &str) -> rusqlite::Result<Vec<String>> {
    let mut statement = connection.prepare(sql)?;
    let rows = statement.query_map([key], |row| row.get(0))?;
    rows.collect()
}

fn collection_rows(
    connection: &Connection,
    ids: &BTreeSet<String>,
) -> rusqlite::Result<Vec<CollectionRow>> {
    rows_by_id(
        connection,
            "SELECT c.id, c.name, c.workflow_id, c.instance_id, c.start_date, c.end_date,
                c.created_at, c.updated_at, c.journal_seq,
                (SELECT count(*) FROM weeks w WHERE w.collection_id = c.id AND w.status = 'completed'),
                (SELECT count(*) FROM weeks w WHERE w.collection_id = c.id AND w.status = 'failed'),
                (SELECT count(*) FROM weeks w WHERE w.collection_id = c.id
                   AND w.status IN ('pending', 'running'))
             FROM json_each(?1) j JOIN collections c ON c.id = j.value",
        ids,
        |row| {
                let end: Option<String> = row.get(5)?;
                let (completed, failed, open): (i32, i64, i64) =
                    (row.get(9)?, row.get(10)?, row.get(11)?);
                let status = if open > 0 {
                    "active"
                } else if failed > 0 {
                    "failed"
                } else {
                    "completed"
                };
                Ok(CollectionRow {
                    id: uuid_at(row, 0)?,
                    name: row.get(1)?,
                    workflow_id: row.get(2)?,
                    instance_id: row.get(3)?,
                    start_date: date_at(row, 4)?,
                    end_date: end.as_deref().and_then(parse_date),
                    status: status.to_owned(),
                    weeks_completed: completed,
                    created_at: time_at(row, 6)?,
                    updated_at: time_at(row, 7)?,
                    journal_seq: row.get(8)?,
                })
            },
    )
}

/// Leaves out attempts AMC never held (intents, abandoned ones): Postgres
/// tracks AMC executions, and those never existed there.
fn execution_rows(
    connection: &Connection,
    ids: &BTreeSet<String>,
) -> rusqlite::Result<Vec<ExecutionRow>> {
    rows_by_id(
        connection,
        "SELECT a.id, a.amc_execution_id, c.workflow_id, c.instance_id, a.state, a.amc_status,
                a.request, a.submitted_at, a.completed_at, a.row_count, a.error_message,
                a.triggered_by, a.created_at, a.updated_at, a.journal_seq
             FROM json_each(?1) j JOIN attempts a ON a.id = j.value
             JOIN weeks w ON w.id = a.week_id
             JOIN collections c ON c.id = w.collection_id
             WHERE a.state NOT IN ('intent', 'abandoned')",
        ids,
        |row| {
            let state: String = row.get(4)?;
            let amc_status: Option<String> = row.get(5)?;
            let request: String = row.get(6)?;
            let status = match state.as_str() {
                "succeeded" => "SUCCEEDED".to_owned(),
                _ => amc_status.unwrap_or_else(|| "PENDING".to_owned()),
            };
            Ok(ExecutionRow {
                id: uuid_at(row, 0)?,
                amc_execution_id: row.get(1)?,
                workflow_id: row.get(2)?,
                instance_id: row.get(3)?,
                status,
                execution_parameters: serde_json::from_str(&request).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        6,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
                started_at: optional_time_at(row, 7)?,
                completed_at: optional_time_at(row, 8)?,
                row_count: row.get(9)?,
                error_message: row.get(10)?,
                triggered_by: row.get(11)?,
                created_at: time_at(row, 12)?,
                updated_at: time_at(row, 13)?,
                journal_seq: row.get(14)?,
            })
        },
    )
}

fn week_rows(connection: &Connection, ids: &BTreeSet<String>) -> rusqlite::Result<Vec<WeekRow>> {
    rows_by_id(
        connection,
        "SELECT w.id, w.collection_id, w.week_start, w.status,
                CASE WHEN a.state IN ('intent', 'abandoned') THEN NULL ELSE a.id END,
                a.amc_execution_id, w.started_at, w.completed_at, w.record_count,
                w.data_checksum, w.error_message, w.created_at, w.updated_at, w.journal_seq
             FROM json_each(?1) j JOIN weeks w ON w.id = j.value
             LEFT JOIN attempts a ON a.id = w.attempt_id",
        ids,
        |row| {
            let start = date_at(row, 2)?;
            let execution: Option<String> = row.get(4)?;
            Ok(WeekRow {
                id: uuid_at(row, 0)?,
                collection_id: uuid_at(row, 1)?,
                week_start_date: start,
                week_end_date: week::inclusive_end(start),
                status: row.get(3)?,
                execution_id: execution
                    .map(|e| Uuid::parse_str(&e).map_err(|_| bad_value(4, &e)))
                    .transpose()?,
                amc_execution_id: row.get(5)?,
                started_at: optional_time_at(row, 6)?,
                completed_at: optional_time_at(row, 7)?,
                record_count: row.get(8)?,
                data_checksum: row.get(9)?,
                error_message: row.get(10)?,
                created_at: time_at(row, 11)?,
                updated_at: time_at(row, 12)?,
                journal_seq: row.get(13)?,
            })
        },
    )
}

fn synced(
    connection: &Connection,
    entity: &str,
    id: &str,
) -> rusqlite::Result<Option<SyncedValues>> {
    let waiting = super::inspect::waiting_since(connection, entity, id)?;
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
            data_checksum, error_message, created_at, submitted_at, completed_at
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
                schedule_hash_at_intent: None,
                postgres: None,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    view.postgres = synced(connection, "week", id)?;
    let mut hash_at = connection.prepare(
        "SELECT json_extract(payload, '$.schedule_hash') FROM events
         WHERE subject = ?1 AND kind IN ('collection.created', 'collection.updated')
           AND seq <= (SELECT min(seq) FROM events WHERE subject = ?2)
         ORDER BY seq DESC LIMIT 1",
    )?;
    for attempt in &mut view.attempts {
        let attempt_id = attempt.id.to_string();
        attempt.postgres = synced(connection, "execution", &attempt_id)?;
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
