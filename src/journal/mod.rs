//! The local SQLite journal: the durable record of every collection, week
//! and execution attempt, the hash-chained event log, and the outbox of rows
//! Postgres has not seen yet.
//!
//! Only this module touches rusqlite. It knows nothing of HTTP or Postgres:
//! it takes facts from the runner and hands tracking rows to the reconciler.
//!
//! The room, by concern:
//! - `open`: refusing foreign files, durability pragmas, migrations, the
//!   read-only open of the commands that only look; `lock`: one runner per
//!   journal, and one creator or migrator at a time.
//! - `events`: the typed vocabulary of the log; `chain`: its hash chain;
//!   `change`: the one-change-per-write helper every writer uses; `group`:
//!   the connection, and concurrent changes committed in one fsync.
//! - `plan`: collections and their due weeks; `attach`: a collection the
//!   application already had, imported; `attempts`: each attempt's
//!   transitions; `scheduler`: the daemon's decisions.
//! - `outbox` and `rows`: what waits for Postgres and the rows it is sent as;
//!   `tracked`: those rows page by page in id order, for `verify`.
//! - `views`: what commands print; `replay`: the state the log implies, for
//!   the audit and lineage; `identity`: deterministic ids (I5).
//! - Operating it (V9): `rerun` (a week run again on a person's request),
//!   `requests` (what a command asks the running daemon to do), `alerts`
//!   (raised inside the change that causes them, delivered by the daemon),
//!   `unresolved` (attempts a run had to leave open), `backup` (SQLite's
//!   online backup of a live journal).

pub mod alerts;
mod attach;
mod attempts;
mod backup;
mod chain;
mod change;
pub mod events;
mod group;
pub mod identity;
mod lock;
mod open;
mod outbox;
mod plan;
pub mod replay;
mod requests;
mod rerun;
mod rows;
mod scheduler;
#[cfg(test)]
mod schema_tests;
mod sql;
mod tracked;
mod unresolved;
mod views;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use group::{Exclusive, Writer};

pub use alerts::{Alert, AlertKind, NewAlert};
pub use attach::{Attached, misaligned};
pub use attempts::{CancelTarget, OpenAttempt, Phase, WorkItem};
pub use backup::BackupReport;
pub use chain::{ChainBreak, GENESIS, LinkFault, hash as event_hash, link_fault};
pub use lock::{DAEMON, RunnerHolder, RunnerLock};
pub use outbox::{Entity, OutboxEntry, Pending, Quarantined};
pub use plan::Plan;
pub use requests::{Request, RequestState};
pub use rerun::{RerunAsk, RerunRefusal};
pub use rows::execution_status;
pub use scheduler::{ScheduleRecord, whoami};
pub use unresolved::Unresolved;
pub use views::health::SyncHealth;
pub use views::lineage::{AttemptView, Lineage, SyncedValues, WeekView};
pub use views::listings::{ExecutionFilter, ExecutionLine, WeekLine};
pub use views::log::{ChainHead, EventFilter, StoredEvent};
pub use views::metrics::{MetricsSnapshot, ScheduleFigures};
pub use views::state::{AuditPart, StateRow, StateTables};
pub use views::status::{CollectionSummary, RunnerStart, StatusReport};

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
    #[error(
        "journal {}: the change was not recorded: the commit it shared with other changes failed ({why})",
        path.display()
    )]
    NotCommitted { path: PathBuf, why: String },
    #[error(
        "journal {} {why}: nothing has been collected with it (check `journal.path`); `chronicle migrate`, `backfill` or `run` creates it",
        path.display()
    )]
    NotCreated { path: PathBuf, why: String },
    #[error(
        "journal {} has schema version {found}, this chronicle reads version {needed}: run `chronicle migrate` (or any command that writes) first; read-only commands never change the file",
        path.display()
    )]
    Outdated {
        path: PathBuf,
        found: i64,
        needed: i64,
    },
    #[error(
        "journal {}: another chronicle process has been creating or migrating it for {}s; try again when it is done",
        path.display(),
        waited.as_secs()
    )]
    OpenTimeout {
        path: PathBuf,
        waited: std::time::Duration,
    },
    #[error("journal {}: the audit's temporary copy of the log failed: {source}", path.display())]
    AuditSpill {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, JournalError>;

/// What `Journal::commit_counts` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitCounts {
    pub changes: u64,
    pub commits: u64,
}

/// Handle to one journal file. Cheap to clone; all clones share one
/// connection, so writes from concurrent week tasks are serialized here
/// (and committed together when they arrive together: `group`).
#[derive(Clone)]
pub struct Journal {
    /// One writer connection: SQLite serializes writers anyway, and one
    /// connection keeps the event chain's "previous hash" read race-free.
    writer: Arc<Writer>,
    /// For error messages and the summary users are shown.
    path: PathBuf,
    /// The file's one name, whichever name it was opened by: the key of
    /// its locks (`lock`).
    canonical: PathBuf,
}

impl Journal {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file beside the journal, named by its canonical name plus
    /// `suffix` (`.lock`, `-wal`, `-shm`).
    fn beside(&self, suffix: &str) -> PathBuf {
        let mut name = self.canonical.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    }

    /// The connection alone (no group commit in progress), for reads and
    /// transactions of their own. A panic while holding it cannot leave a
    /// half transaction: rusqlite rolls back on drop.
    fn lock(&self) -> Exclusive<'_> {
        self.writer.exclusive()
    }

    /// Changes committed and the COMMITs (fsyncs) that committed them,
    /// since this handle was opened: more changes than commits means
    /// concurrent writers shared commits.
    pub fn commit_counts(&self) -> CommitCounts {
        let (changes, commits) = self.writer.counts();
        CommitCounts { changes, commits }
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
