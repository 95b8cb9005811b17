//! The locks that belong to a journal file, not to a spelling of its path:
//! both are taken on names derived from the journal's canonical path
//! (symbolic links, `..` and relative paths resolved by `open`), so every
//! name of one journal meets the same locks.
//!
//! - The runner lock: an exclusive `flock` on `<canonical journal>.lock`,
//!   held for the life of `run`, `backfill`, `cancel` or `demo` and released
//!   by the OS however the process ends, so a crash never leaves a stale
//!   lock behind. The file holds the holder's pid and command for the
//!   refusal. Read-only commands do not take it.
//! - The open lock: a `flock` on the folder that holds the journal file,
//!   exclusive while a journal is created or migrated, shared while a
//!   read-only open checks it, so a journal being made by another process
//!   is waited for instead of being seen half made. Held only during
//!   `open`. A folder rather than a file beside the journal: a read-only
//!   open may not create anything, and the folder always exists.
//!
//! `flock` is used, never `fcntl`: SQLite holds POSIX (`fcntl`) locks on the
//! database file, and closing any descriptor of that file would drop them.
//! Neither lock touches the database file or its `-wal` and `-shm`.
//!
//! A directory bind mount shows the same folder, hence the same lock file
//! and folder lock. Hard links are refused by the runner lock: SQLite keeps
//! a `-wal` per name, so a second name is unsafe before it is unlocked.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Journal, JournalError, Result};
use crate::files;

/// How long an open waits for another process to finish creating or
/// migrating the journal. Migrating a large journal takes seconds; a
/// process stuck longer than this is named rather than waited for.
const OPEN_WAIT: Duration = Duration::from_secs(30);

/// How often a waiting open tries the open lock again.
const OPEN_POLL: Duration = Duration::from_millis(10);

/// Dropping it releases the journal for the next runner.
#[derive(Debug)]
pub struct RunnerLock {
    /// The locked file; the lock lives exactly as long as this handle.
    _file: File,
}

impl Journal {
    /// Takes the runner lock or names the process that holds it.
    pub fn lock_runner(&self, command: &str) -> Result<RunnerLock> {
        let links = std::fs::metadata(&self.canonical)
            .map_err(|e| self.invalid(format!("cannot read {}: {e}", self.canonical.display())))?
            .nlink();
        if links > 1 {
            return Err(self.invalid(format!(
                "{} has {links} hard links: a runner started under another of its names would not meet this one's lock, and SQLite keeps a separate -wal per name; remove the extra links (a symbolic link is fine)",
                self.canonical.display()
            )));
        }
        // `<canonical journal>.lock`: one file for every name of the journal.
        let path = self.beside(".lock");
        let mut file = files::open_or_create(&path)
            .map_err(|e| self.invalid(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(JournalError::Busy {
                    path: self.path.clone(),
                    holder: holder.trim().to_owned(),
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(self.invalid(format!("cannot lock {}: {e}", path.display())));
            }
        }
        let note = format!(
            "pid {} (chronicle {command}, started {})\n",
            std::process::id(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        );
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(note.as_bytes()));
        written.map_err(|e| self.invalid(format!("cannot write {}: {e}", path.display())))?;
        Ok(RunnerLock { _file: file })
    }
}

/// The process holding a journal's runner lock, as its lock file names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerHolder {
    /// `pid N (chronicle COMMAND, started T)`.
    pub note: String,
    /// It is a daemon (`chronicle run`): it carries out requests.
    pub daemon: bool,
    /// Its process id, as the note gives it.
    pub pid: Option<u32>,
}

impl Journal {
    /// Who holds the runner lock now, if anyone: taken and let go at
    /// once when free. A command asks before deciding to run in process
    /// or to leave a request for the daemon.
    pub fn runner_holder(&self) -> Result<Option<RunnerHolder>> {
        match self.lock_runner("probe") {
            Ok(lock) => {
                drop(lock);
                Ok(None)
            }
            Err(JournalError::Busy { holder, .. }) => Ok(Some(RunnerHolder {
                daemon: holder.contains(&format!("(chronicle {DAEMON},")),
                pid: holder
                    .strip_prefix("pid ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|pid| pid.parse().ok()),
                note: holder,
            })),
            Err(e) => Err(e),
        }
    }
}

/// The command name the daemon's lock note carries.
pub const DAEMON: &str = "run";

/// Who else may hold the open lock at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Creating or migrating: nobody else.
    Exclusive,
    /// Checking for a read-only open: other readers, no creator.
    Shared,
}

/// Held while a journal is opened; dropping it lets the next open in.
#[derive(Debug)]
pub(super) struct OpenLock {
    /// The locked folder; the lock lives exactly as long as this handle.
    _folder: File,
}

impl OpenLock {
    /// Takes the open lock of the journal at `canonical` (named `shown` in
    /// errors), waiting at most `OPEN_WAIT` for another process's open.
    /// A shared lock on a folder that cannot be opened is skipped: the
    /// read-only open still refuses a half-made journal by its schema.
    pub(super) fn take(shown: &Path, canonical: &Path, access: Access) -> Result<Option<OpenLock>> {
        let folder_path = canonical.parent().unwrap_or(Path::new("/"));
        let folder = match File::open(folder_path) {
            Ok(folder) => folder,
            Err(_) if access == Access::Shared => return Ok(None),
            Err(e) => {
                return Err(JournalError::Invalid {
                    path: shown.to_path_buf(),
                    what: format!(
                        "cannot open its folder {} to lock it: {e}",
                        folder_path.display()
                    ),
                });
            }
        };
        let started = Instant::now();
        loop {
            let tried = match access {
                Access::Exclusive => folder.try_lock(),
                Access::Shared => folder.try_lock_shared(),
            };
            match tried {
                Ok(()) => return Ok(Some(OpenLock { _folder: folder })),
                Err(TryLockError::WouldBlock) if started.elapsed() < OPEN_WAIT => {
                    std::thread::sleep(OPEN_POLL);
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(JournalError::OpenTimeout {
                        path: shown.to_path_buf(),
                        waited: OPEN_WAIT,
                    });
                }
                Err(TryLockError::Error(e)) => {
                    return Err(JournalError::Invalid {
                        path: shown.to_path_buf(),
                        what: format!("cannot lock its folder {}: {e}", folder_path.display()),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exclusive_open_lock_keeps_readers_and_creators_out_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.db");
        let held = OpenLock::take(&journal, &journal, Access::Exclusive)
            .unwrap()
            .expect("a folder we made can be locked");
        let folder = File::open(dir.path()).unwrap();
        assert!(matches!(
            folder.try_lock_shared(),
            Err(TryLockError::WouldBlock)
        ));
        drop(held);
        let first = OpenLock::take(&journal, &journal, Access::Shared).unwrap();
        let second = OpenLock::take(&journal, &journal, Access::Shared).unwrap();
        assert!(first.is_some() && second.is_some(), "readers share it");
        assert!(matches!(folder.try_lock(), Err(TryLockError::WouldBlock)));
    }
}
