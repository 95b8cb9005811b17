//! `chronicle backup <file>`: a consistent copy of a live journal through
//! SQLite's online backup API (one read transaction over every page, so a
//! daemon writing meanwhile is neither stopped nor half copied), never a
//! file copy, which could catch the main file and its `-wal` at different
//! moments.
//!
//! Owns making the copy: written to `<file>.part` (0600), set to a
//! self-contained rollback journal (`journal_mode = DELETE`: one file, no
//! `-wal` to carry along), fsynced, then renamed over `<file>`. Checking
//! it is the audit's, on the copy like on any journal.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use rusqlite::backup::{Backup, StepResult};
use serde::Serialize;

use super::{Journal, JournalError, Result};
use crate::files;

/// What a backup wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub file: PathBuf,
    pub bytes: u64,
    /// The last event the copy holds, and its hash: the copy is the
    /// journal as it was at that event.
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
}

impl Journal {
    /// Copies the journal to `target` as it is at one instant.
    pub fn backup_to(&self, target: &Path) -> Result<BackupReport> {
        let failed = |what: String| JournalError::Invalid {
            path: target.to_path_buf(),
            what: format!("backup: {what}"),
        };
        if std::fs::canonicalize(target).is_ok_and(|t| t == self.canonical) {
            return Err(failed(
                "refusing to write the backup over the journal itself".into(),
            ));
        }
        let mut part = target.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        files::create(&part)
            .map_err(|e| failed(format!("cannot create {}: {e}", part.display())))?;
        let sqlite = |e: rusqlite::Error| failed(e.to_string());
        let copied = (|| {
            let mut copy = Connection::open(&part).map_err(sqlite)?;
            {
                let source = self.lock();
                let backup = Backup::new(&source, &mut copy).map_err(sqlite)?;
                // All pages in one step: one read transaction, one instant.
                // Busy or locked: another connection held a lock a moment.
                while backup.step(-1).map_err(sqlite)? != StepResult::Done {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
            let mode: String = copy
                .query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))
                .map_err(sqlite)?;
            if mode != "delete" {
                return Err(failed(format!("the copy stayed in journal_mode {mode}")));
            }
            let head: Option<(i64, String)> = copy
                .query_row(
                    "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .ok();
            copy.close().map_err(|(_, e)| sqlite(e))?;
            Ok(head)
        })();
        let head = match copied {
            Ok(head) => head,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        };
        let io = |what: &str, e: std::io::Error| failed(format!("{what}: {e}"));
        std::fs::File::open(&part)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("cannot fsync the copy", e))?;
        std::fs::rename(&part, target).map_err(|e| io("cannot move the copy in place", e))?;
        if let Some(folder) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            // The rename is durable only once the folder is.
            std::fs::File::open(folder)
                .and_then(|f| f.sync_all())
                .map_err(|e| io("cannot fsync the backup's folder", e))?;
        }
        let bytes = std::fs::metadata(target)
            .map_err(|e| io("cannot read the copy", e))?
            .len();
        Ok(BackupReport {
            file: target.to_path_buf(),
            bytes,
            head_seq: head.as_ref().map(|h| h.0),
            head_hash: head.map(|h| h.1),
        })
    }
}
