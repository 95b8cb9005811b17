//! The audit listings: `chronicle weeks` (and its grid) and
//! `chronicle executions`.
//!
//! Owns the queries; every one goes through an index, so a listing costs
//! the same on a journal of a million events as on a small one.

use std::collections::{HashMap, HashSet};

use rusqlite::params;
use serde::Serialize;

use super::super::{Journal, Result, identity};

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
    /// Why a run left the week's open attempt unresolved, while it is.
    pub unresolved: Option<String>,
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
                    unresolved: None,
                })
            })
            .map_err(sqlite)?;
        let mut weeks = rows
            .collect::<rusqlite::Result<Vec<WeekLine>>>()
            .map_err(sqlite)?;
        // A handful of rows at most (V9's `unresolved_attempts`).
        let mut unresolved = connection
            .prepare("SELECT week_id, reason FROM unresolved_attempts")
            .map_err(sqlite)?;
        let unresolved: HashMap<String, String> = unresolved
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(sqlite)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sqlite)?;
        for week in &mut weeks {
            week.synced = !waiting.contains(&week.week_id);
            week.unresolved = unresolved.get(&week.week_id).cloned();
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
}
