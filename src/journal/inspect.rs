//! Journal queries for audits: the week listing and grid, executions, the raw
//! event stream, the chain head, the state tables as an audit replays them,
//! and which change of a row Postgres has not acknowledged yet.
//!
//! Owns reads only. It does
//! not judge anything: `audit` and `evidence` decide what is a finding.
//! Every per-command query goes through an index, so `weeks` and `lineage`
//! cost the same on a journal of a million events as on a small one, and
//! events are streamed, never loaded whole.

use std::collections::{BTreeMap, HashSet};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Journal, Result};
use crate::journal::identity;

/// One week as `chronicle weeks` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct WeekLine {
    /// The week's UUIDv5: the same in Postgres.
    pub week_id: String,
    /// First day of the week (YYYY-MM-DD).
    pub week_start: String,
    /// pending, running, completed or failed.
    pub status: String,
    /// Attempts made for the week so far (retries included).
    pub attempts: i64,
    /// The AMC execution of the week's current attempt, if AMC holds one.
    pub amc_execution_id: Option<String>,
    /// Result rows of the completed week.
    pub record_count: Option<i64>,
    /// sha256 of the decompressed result: what an auditor compares.
    pub data_checksum: Option<String>,
    /// False while a change of the week waits in the outbox or quarantine.
    pub synced: bool,
}

/// One execution attempt as `chronicle executions` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionLine {
    /// The attempt's UUIDv7, minted at intent time.
    pub attempt_id: String,
    /// The collection (schedule) it belongs to.
    pub schedule: String,
    /// The week it ran for.
    pub week_start: String,
    /// The journal's state: intent, submitted, succeeded, failed, abandoned.
    pub state: String,
    /// AMC's id, once AMC answered (or it was adopted).
    pub amc_execution_id: Option<String>,
    /// AMC's last reported status word.
    pub amc_status: Option<String>,
    /// Result rows, once succeeded.
    pub row_count: Option<i64>,
    /// sha256 of the decompressed result, once succeeded.
    pub data_checksum: Option<String>,
    /// What started it (backfill, the daemon, the demo).
    pub triggered_by: String,
    /// When the intent was journaled.
    pub created_at: String,
    /// When it ended, if it has.
    pub completed_at: Option<String>,
}

/// Which executions to list; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    /// Only this schedule's attempts.
    pub schedule: Option<String>,
    /// Matches the journal state or AMC's status word, case-insensitively.
    pub status: Option<String>,
    /// Attempts created at or after this RFC 3339 instant (or date prefix).
    pub since: Option<String>,
}

/// One event exactly as stored: what the hash chain covers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    /// Position in the chain, from 1 without gaps.
    pub seq: i64,
    /// When the change was journaled (RFC 3339 UTC, milliseconds).
    pub at: String,
    /// What happened, e.g. `attempt.succeeded`.
    pub kind: String,
    /// The row it is about (collection, week or attempt id, or `runner`).
    pub subject: String,
    /// The stored JSON text byte for byte (hashed as text, never re-encoded).
    pub payload: String,
    /// The previous event's hash (64 zeros for event 1).
    pub prev_hash: String,
    /// sha256 of the canonical form (ARCHITECTURE.md).
    pub hash: String,
}

/// Which events to stream.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events after this sequence number (how `--follow` resumes).
    pub after_seq: i64,
    /// Only events at or after this RFC 3339 instant (or date prefix).
    pub since: Option<String>,
    /// Only events of this kind.
    pub kind: Option<String>,
}

/// The last event: what Postgres is shown at each sync.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChainHead {
    /// The last event's number.
    pub seq: i64,
    /// The last event's hash: commits to every event before it.
    pub hash: String,
}

/// One state-table row reduced to the columns the event log determines,
/// keyed by column name, as the audit's replay rebuilds them. Names are
/// static: the audit holds a row per week and attempt, and a heap string
/// per column name of each would cost about as much as the values.
pub type StateRow = BTreeMap<&'static str, Value>;

/// The state tables: `(entity, id)` to the row's replayable columns.
pub type StateTables = BTreeMap<(String, String), StateRow>;

fn sqlite_text(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Value> {
    Ok(match row.get_ref(index)? {
        rusqlite::types::ValueRef::Null => Value::Null,
        rusqlite::types::ValueRef::Integer(n) => json!(n),
        rusqlite::types::ValueRef::Real(x) => json!(x),
        rusqlite::types::ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
        rusqlite::types::ValueRef::Blob(b) => json!(hex::encode(b)),
    })
}

impl Journal {
    /// Every week of the schedule named `schedule`, oldest first; `None`
    /// when the journal holds no such collection.
    pub fn weeks_of(&self, schedule: &str) -> Result<Option<Vec<WeekLine>>> {
        let collection_id = identity::collection_id(schedule).to_string();
        let connection = self.lock();
        let sqlite = |e| self.sqlite(e);
        let known: bool = connection
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM collections WHERE id = ?1)",
                [&collection_id],
                |row| row.get(0),
            )
            .map_err(sqlite)?;
        if !known {
            return Ok(None);
        }
        // One pass over what waits for Postgres (the outbox has no index by
        // row, see V5), then one indexed walk of the schedule's weeks.
        let mut waiting = connection
            .prepare(
                "SELECT entity_id FROM outbox WHERE entity = 'week'
                 UNION SELECT entity_id FROM quarantine WHERE entity = 'week'",
            )
            .map_err(sqlite)?;
        let waiting: HashSet<String> = waiting
            .query_map([], |row| row.get(0))
            .map_err(sqlite)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sqlite)?;
        let mut statement = connection
            .prepare(
                "SELECT w.id, w.week_start, w.status, w.attempts, a.amc_execution_id,
                    w.record_count, w.data_checksum
                 FROM weeks w LEFT JOIN attempts a ON a.id = w.attempt_id
                 WHERE w.collection_id = ?1 ORDER BY w.week_start",
            )
            .map_err(sqlite)?;
        let rows = statement
            .query_map([&collection_id], |row| {
                Ok(WeekLine {
                    week_id: row.get(0)?,
                    week_start: row.get(1)?,
                    status: row.get(2)?,
                    attempts: row.get(3)?,
                    amc_execution_id: row.get(4)?,
                    record_count: row.get(5)?,
                    data_checksum: row.get(6)?,
                    synced: false,
                })
            })
            .map_err(sqlite)?;
        let mut weeks = rows
            .collect::<rusqlite::Result<Vec<WeekLine>>>()
            .map_err(sqlite)?;
        for week in &mut weeks {
            week.synced = !waiting.contains(&week.week_id);
        }
        Ok(Some(weeks))
    }

    /// Execution attempts matching `filter`, newest first.
    pub fn executions(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionLine>> {
        let connection = self.lock();
        let sqlite = |e| self.sqlite(e);
        let mut statement = connection
            .prepare(
                "SELECT a.id, c.name, w.week_start, a.state, a.amc_execution_id, a.amc_status,
                    a.row_count, a.data_checksum, a.triggered_by, a.created_at, a.completed_at
                 FROM attempts a JOIN weeks w ON w.id = a.week_id
                 JOIN collections c ON c.id = w.collection_id
                 WHERE (?1 IS NULL OR c.name = ?1)
                   AND (?2 IS NULL OR lower(a.state) = lower(?2) OR lower(a.amc_status) = lower(?2))
                   AND (?3 IS NULL OR a.created_at >= ?3)
                 ORDER BY a.created_at DESC, a.id DESC",
            )
            .map_err(sqlite)?;
        let rows = statement
            .query_map(
                params![filter.schedule, filter.status, filter.since],
                |row| {
                    Ok(ExecutionLine {
                        attempt_id: row.get(0)?,
                        schedule: row.get(1)?,
                        week_start: row.get(2)?,
                        state: row.get(3)?,
                        amc_execution_id: row.get(4)?,
                        amc_status: row.get(5)?,
                        row_count: row.get(6)?,
                        data_checksum: row.get(7)?,
                        triggered_by: row.get(8)?,
                        created_at: row.get(9)?,
                        completed_at: row.get(10)?,
                    })
                },
            )
            .map_err(sqlite)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sqlite)
    }

    /// Streams the events matching `filter` in `seq` order to `each`, one
    /// at a time; returns the last sequence number seen (or `after_seq`).
    /// `each` returning an error stops the walk with it.
    pub fn each_event<E: From<super::JournalError>>(
        &self,
        filter: &EventFilter,
        mut each: impl FnMut(Event) -> std::result::Result<(), E>,
    ) -> std::result::Result<i64, E> {
        let connection = self.lock();
        // A walk of the log in seq order, filtering as it streams: no index
        // by kind, whose page every commit would pay for (V7).
        let sql = "SELECT seq, at, kind, subject, payload, prev_hash, hash FROM events
             WHERE seq > ?1 AND (?2 IS NULL OR at >= ?2) AND (?3 IS NULL OR kind = ?3)
             ORDER BY seq";
        let mut statement = connection
            .prepare(sql)
            .map_err(|e| E::from(self.sqlite(e)))?;
        let mut rows = statement
            .query(params![filter.after_seq, filter.since, filter.kind])
            .map_err(|e| E::from(self.sqlite(e)))?;
        let mut last = filter.after_seq;
        while let Some(row) = rows.next().map_err(|e| E::from(self.sqlite(e)))? {
            let event = Event {
                seq: row.get(0).map_err(|e| E::from(self.sqlite(e)))?,
                at: row.get(1).map_err(|e| E::from(self.sqlite(e)))?,
                kind: row.get(2).map_err(|e| E::from(self.sqlite(e)))?,
                subject: row.get(3).map_err(|e| E::from(self.sqlite(e)))?,
                payload: row.get(4).map_err(|e| E::from(self.sqlite(e)))?,
                prev_hash: row.get(5).map_err(|e| E::from(self.sqlite(e)))?,
                hash: row.get(6).map_err(|e| E::from(self.sqlite(e)))?,
            };
            last = event.seq;
            each(event)?;
        }
        Ok(last)
    }

    /// The last event's sequence number and hash; `None` for an empty log.
    pub fn chain_head(&self) -> Result<Option<ChainHead>> {
        let connection = self.lock();
        connection
            .query_row(
                "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
                [],
                |row| {
                    Ok(ChainHead {
                        seq: row.get(0)?,
                        hash: row.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    /// The stored hash of event `seq`, if it exists.
    pub fn event_hash(&self, seq: i64) -> Result<Option<String>> {
        let connection = self.lock();
        connection
            .query_row("SELECT hash FROM events WHERE seq = ?1", [seq], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    /// The first event of the collection `schedule` names (its creation),
    /// where its evidence starts.
    pub fn first_seq_of(&self, schedule: &str) -> Result<Option<i64>> {
        let collection_id = identity::collection_id(schedule).to_string();
        let connection = self.lock();
        connection
            .query_row(
                "SELECT min(seq) FROM events WHERE subject = ?1",
                [collection_id],
                |row| row.get(0),
            )
            .map_err(|e| self.sqlite(e))
    }

    /// The first event at or after `since` (RFC 3339 text or a date prefix).
    pub fn first_seq_since(&self, since: &str) -> Result<Option<i64>> {
        let connection = self.lock();
        connection
            .query_row(
                "SELECT min(seq) FROM events WHERE at >= ?1",
                [since],
                |row| row.get(0),
            )
            .map_err(|e| self.sqlite(e))
    }

    /// This journal's identity: the key of its chain heads in Postgres.
    pub fn journal_id(&self) -> Result<String> {
        let connection = self.lock();
        connection
            .query_row(
                "SELECT journal_id FROM journal_identity WHERE id = 1",
                [],
                |row| row.get(0),
            )
            .map_err(|e| self.sqlite(e))
    }

    /// Streams the columns of every state-table row that the event log
    /// determines to `each` (entity, id, row), for the audit to compare with
    /// its replay without holding the tables beside it.
    pub fn each_state_row(
        &self,
        mut each: impl FnMut(&'static str, String, StateRow),
    ) -> Result<()> {
        let connection = self.lock();
        let sqlite = |e| self.sqlite(e);
        let queries: [(&'static str, &str, &[&'static str]); 3] = [
            (
                "collection",
                "SELECT id, name, workflow_id, instance_id, start_date, schedule_hash, journal_seq,
                    schedule_file
                 FROM collections",
                &[
                    "name",
                    "workflow_id",
                    "instance_id",
                    "start_date",
                    "schedule_hash",
                    "journal_seq",
                    "schedule_file",
                ],
            ),
            (
                "week",
                "SELECT id, collection_id, week_start, status, attempt_id, attempts,
                    record_count, data_checksum, journal_seq, error_message FROM weeks",
                &[
                    "collection_id",
                    "week_start",
                    "status",
                    "attempt_id",
                    "attempts",
                    "record_count",
                    "data_checksum",
                    "journal_seq",
                    "error_message",
                ],
            ),
            (
                "execution",
                "SELECT id, week_id, state, amc_execution_id, amc_status, row_count,
                    data_checksum, journal_seq, error_message, triggered_by FROM attempts",
                &[
                    "week_id",
                    "state",
                    "amc_execution_id",
                    "amc_status",
                    "row_count",
                    "data_checksum",
                    "journal_seq",
                    "error_message",
                    "triggered_by",
                ],
            ),
        ];
        for (entity, sql, columns) in queries {
            let mut statement = connection.prepare(sql).map_err(sqlite)?;
            let mut rows = statement.query([]).map_err(sqlite)?;
            while let Some(row) = rows.next().map_err(sqlite)? {
                let id: String = row.get(0).map_err(sqlite)?;
                let mut state = StateRow::new();
                for (i, column) in columns.iter().enumerate() {
                    state.insert(column, sqlite_text(row, i + 1).map_err(sqlite)?);
                }
                each(entity, id, state);
            }
        }
        Ok(())
    }
}

/// The first change of one row that Postgres has not acknowledged (waiting
/// in the outbox or quarantined); `None` when Postgres holds its current
/// state. The outbox is scanned: it holds only what waits, and an index on
/// it would slow the reconciler's acknowledgements.
pub(super) fn waiting_since(
    connection: &rusqlite::Connection,
    entity: &str,
    id: &str,
) -> rusqlite::Result<Option<i64>> {
    connection.query_row(
        "SELECT min(seq) FROM (
            SELECT seq FROM outbox WHERE entity = ?1 AND entity_id = ?2
            UNION ALL SELECT seq FROM quarantine WHERE entity = ?1 AND entity_id = ?2)",
        params![entity, id],
        |row| row.get(0),
    )
}
