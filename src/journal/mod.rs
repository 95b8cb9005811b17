//! The local SQLite journal: the durable record of every collection, week and
//! execution attempt, the hash-chained event log, and the outbox of rows
//! Postgres has not seen yet.
//!
//! Only this module touches rusqlite. It knows nothing of HTTP or Postgres:
//! it hands tracking rows to the reconciler and takes facts from the runner.

mod chain;
mod firings;
pub mod identity;
mod inspect;
mod lock;
mod read;
pub mod replay;
mod unresolved;
mod write;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags};
use uuid::Uuid;

use crate::amc::{CreateExecution, Status};

pub use chain::{ChainBreak, GENESIS, LinkFault, hash as event_hash, link_fault};
pub use firings::{MetricsSnapshot, ScheduleRecord, SyncHealth};
pub use inspect::{
    ChainHead, Event, EventFilter, ExecutionFilter, ExecutionLine, StateRow, StateTables, WeekLine,
};
pub use lock::RunnerLock;
pub use read::{
    AttemptView, CollectionSummary, Lineage, OutboxEntry, Pending, Quarantined, RunnerStart,
    StatusReport, SyncedValues, WeekView,
};
pub use write::{CancelTarget, Plan};

/// `PRAGMA application_id` of a chronicle journal ("CHRN"): how a journal is
/// told apart from any other SQLite file before anything is written to it.
const APPLICATION_ID: i32 = 0x4348_524E;

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "{} is not a chronicle journal ({why}); refusing to open it, the file was left untouched",
        path.display()
    )]
    Foreign { path: PathBuf, why: String },
    #[error("journal {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("journal {}: cannot apply migrations: {why}", path.display())]
    Migration { path: PathBuf, why: String },
    #[error(
        "journal {} is in use by another chronicle runner: {holder}; stop it first (status and lineage work meanwhile)",
        path.display()
    )]
    Busy { path: PathBuf, holder: String },
    #[error("journal {}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
}

pub type Result<T> = std::result::Result<T, JournalError>;

/// Handle to one journal file. Cheap to clone; all clones share one
/// connection, so writes from concurrent week tasks are serialized here.
#[derive(Clone)]
pub struct Journal {
    /// One writer connection: SQLite serializes writers anyway, and one
    /// connection keeps the event chain's "previous hash" read race-free.
    connection: Arc<Mutex<Connection>>,
    /// For error messages and the summary users are shown.
    path: PathBuf,
}

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
    fn parse(text: &str) -> Option<Phase> {
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

impl Journal {
    /// Opens (creating if absent) and migrates the journal at `path`. A file
    /// that is not a chronicle journal is refused before anything is written.
    pub fn open(path: &Path) -> Result<Journal> {
        refuse_foreign(path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| JournalError::Invalid {
                path: path.to_path_buf(),
                what: format!("cannot create its folder: {e}"),
            })?;
        }
        let sqlite = |source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut connection = Connection::open(path).map_err(sqlite)?;
        // I1: WAL + synchronous=FULL makes every commit durable on return.
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 10000;",
            )
            .map_err(sqlite)?;
        // Every write runs its statements from the cache (BENCHMARKS.md,
        // journal); rusqlite's default of 16 is fewer than the write path
        // and the reconciler's reads use, and an evicted one is compiled
        // again on its next use.
        connection.set_prepared_statement_cache_capacity(64);
        embedded::migrations::runner()
            .run(&mut connection)
            .map_err(|e| JournalError::Migration {
                path: path.to_path_buf(),
                why: e.to_string(),
            })?;
        connection
            .execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};"))
            .map_err(sqlite)?;
        Ok(Journal {
            connection: Arc::new(Mutex::new(connection)),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half transaction:
        // rusqlite rolls back on drop, so the connection stays usable.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sqlite(&self, source: rusqlite::Error) -> JournalError {
        JournalError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn invalid(&self, what: impl Into<String>) -> JournalError {
        JournalError::Invalid {
            path: self.path.clone(),
            what: what.into(),
        }
    }
}

/// Reads the file's header and application id without opening it for
/// writing, so a foreign file is never touched (I7).
fn refuse_foreign(path: &Path) -> Result<()> {
    let foreign = |why: String| JournalError::Foreign {
        path: path.to_path_buf(),
        why,
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(foreign(format!("cannot read it: {e}"))),
    };
    if path.is_dir() {
        return Err(foreign("it is a folder".into()));
    }
    let mut header = Vec::with_capacity(16);
    file.by_ref()
        .take(16)
        .read_to_end(&mut header)
        .map_err(|e| foreign(format!("cannot read it: {e}")))?;
    if header.is_empty() {
        return Ok(());
    }
    if header != b"SQLite format 3\0" {
        return Err(foreign("it is not an SQLite database".into()));
    }
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| foreign(format!("cannot open it read-only: {e}")))?;
    let (application_id, tables): (i32, i64) = connection
        .query_row(
            "SELECT (SELECT application_id FROM pragma_application_id),
                    (SELECT count(*) FROM sqlite_master WHERE type = 'table')",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(|e| foreign(format!("cannot read its schema: {e}")))?;
    if application_id == APPLICATION_ID || (application_id == 0 && tables == 0) {
        Ok(())
    } else {
        Err(foreign(format!(
            "an SQLite database of another application: application_id {application_id:#x}, {tables} tables"
        )))
    }
}

/// RFC 3339 UTC with milliseconds: sorts as text, parses everywhere.
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}
