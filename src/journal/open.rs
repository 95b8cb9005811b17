//! Opening a journal file: refusing one that is not a chronicle journal
//! before anything is written to it (I7), the pragmas that make every
//! commit durable (I1), and the embedded migrations.
//!
//! Owns the file's identity (`application_id`) and its schema version. Not
//! the runner lock (`lock`), nor anything written after opening.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use super::{Journal, JournalError, Result};

/// `PRAGMA application_id` of a chronicle journal ("CHRN"): how a journal is
/// told apart from any other SQLite file before anything is written to it.
const APPLICATION_ID: i32 = 0x4348_524E;

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
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
