//! `chronicle status`: per collection, weeks by status, live executions and
//! rows collected; the outbox, quarantine and last sync; the journal's
//! durability settings; what the last runner start recovered; the journal's
//! files and folder that others than their owner may read or write.
//!
//! Owns the query; totals come from V7's running totals, never a count of
//! the whole history.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rusqlite::OptionalExtension;
use serde::Serialize;

use super::super::sql::date_at;
use super::super::{Journal, Result, Unresolved};
use crate::files::{self, Exposure};

/// Unresolved attempts `status` names with their reasons.
const UNRESOLVED_SHOWN: usize = 5;

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
    /// Open attempts whose latest event is `attempt.unresolved`: a run
    /// had to leave them (AMC could not be asked, or answered ambiguously).
    pub unresolved_attempts: i64,
    /// The newest of those, with the reason.
    pub unresolved: Vec<Unresolved>,
    /// Alerts no configured receiver has acknowledged yet.
    pub undelivered_alerts: i64,
    pub last_sync_success: Option<String>,
    pub last_sync_error: Option<String>,
    pub executions: i64,
    /// The journal, its `-wal`, `-shm` and lock files and its folder, when
    /// group or others may read or write them: they hold the execution
    /// history. Empty when all are private.
    pub permissions: Vec<Exposure>,
}

impl Journal {
    pub fn status(&self) -> Result<StatusReport> {
        let connection = self.lock();
        let sqlite = |e| self.sqlite(e);
        // Live executions from V10's partial index of open attempts, named
        // because SQLite otherwise walks the collection's every week.
        let mut statement = connection
            .prepare(
                "SELECT c.id, c.name, c.workflow_id, c.instance_id, c.start_date,
                    (SELECT count(*) FROM attempts a INDEXED BY attempts_open
                      JOIN weeks w ON w.id = a.week_id
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
        drop(counts);
        drop(statement);
        drop(connection);
        let (unresolved_attempts, unresolved) = self.unresolved(UNRESOLVED_SHOWN)?;
        let undelivered_alerts = self.undelivered_alerts()?;
        Ok(StatusReport {
            unresolved_attempts,
            unresolved,
            undelivered_alerts,
            permissions: self.exposures(),
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
}

impl Journal {
    /// Which of the journal's files and its folder are open to group or
    /// others, by their canonical names.
    fn exposures(&self) -> Vec<Exposure> {
        let folder = self.canonical.parent().map(std::path::Path::to_path_buf);
        [
            Some(self.canonical.clone()),
            Some(self.beside("-wal")),
            Some(self.beside("-shm")),
            Some(self.beside(".lock")),
            folder,
        ]
        .into_iter()
        .flatten()
        .filter_map(|path| files::exposure(&path))
        .collect()
    }
}
