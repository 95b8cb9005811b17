//! One runner per journal: an exclusive lock on `<journal>.lock`, held for
//! the life of the process and released by the OS however it ends, so a
//! crash never leaves a stale lock behind. Read-only commands do not take it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use super::{Journal, JournalError, Result};

/// Dropping it releases the journal for the next runner.
#[derive(Debug)]
pub struct RunnerLock {
    /// The locked file; the lock lives exactly as long as this handle.
    _file: File,
}

impl Journal {
    fn lock_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the runner lock or names the process that holds it.
    pub fn lock_runner(&self, command: &str) -> Result<RunnerLock> {
        let path = self.lock_path();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
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
