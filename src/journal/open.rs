//! Opening a journal file: refusing one that is not a chronicle journal
//! before anything is written to it (I7), the pragmas that make every
//! commit durable (I1), the embedded migrations, and the read-only open of
//! the commands that only look.
//!
//! Owns the file's identity (its canonical path and `application_id`), its
//! schema version and its creation: creating and migrating is one step
//! under the open lock (`lock`), the `application_id` is written before
//! the first table, and the file is created 0600 so SQLite's `-wal` and
//! `-shm` get that mode too. Not the runner lock, nor anything written
//! after opening.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::group::Writer;
use super::lock::{Access, OpenLock};
use super::{Journal, JournalError, Result};
use crate::files;

/// `PRAGMA application_id` of a chronicle journal ("CHRN"): how a journal is
/// told apart from any other SQLite file before anything is written to it.
pub(super) const APPLICATION_ID: i32 = 0x4348_524E;

/// Symbolic links followed before a name is given up on (Linux's own limit).
const MAX_LINKS: usize = 40;

pub(super) mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

impl Journal {
    /// Opens (creating if absent) and migrates the journal at `path`. A file
    /// that is not a chronicle journal is refused before anything is written.
    /// Another process creating or migrating the same journal is waited for.
    pub fn open(path: &Path) -> Result<Journal> {
        refuse_foreign(path)?;
        let sqlite = |source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let canonical = canonical_for_create(path)?;
        let _creating = OpenLock::take(path, &canonical, Access::Exclusive)?;
        // Again under the lock: whatever another process was making is
        // finished now, so a journal is never mistaken for a foreign file.
        refuse_foreign(&canonical)?;
        files::create_empty_if_absent(&canonical).map_err(|e| JournalError::Invalid {
            path: path.to_path_buf(),
            what: format!("cannot create it: {e}"),
        })?;
        let mut connection = Connection::open(&canonical).map_err(sqlite)?;
        // I1: WAL + synchronous=FULL makes every commit durable on return.
        // Foreign keys wait for the migrations (`enforce_foreign_keys`);
        // the bundled SQLite turns them on by default.
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = OFF;
                 PRAGMA busy_timeout = 10000;",
            )
            .map_err(sqlite)?;
        // Every write runs its statements from the cache (BENCHMARKS.md,
        // journal); rusqlite's default of 16 is fewer than the write path
        // and the reconciler's reads use, and an evicted one is compiled
        // again on its next use.
        connection.set_prepared_statement_cache_capacity(64);
        // The id goes in before the first table, and only when missing: a
        // journal cut short while being made is still recognised as one,
        // and an open of a finished journal writes nothing.
        if application_id(&connection).map_err(sqlite)? != APPLICATION_ID {
            connection
                .execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};"))
                .map_err(sqlite)?;
        }
        let report = embedded::migrations::runner()
            .run(&mut connection)
            .map_err(|e| JournalError::Migration {
                path: path.to_path_buf(),
                why: e.to_string(),
            })?;
        let migrated = !report.applied_migrations().is_empty();
        enforce_foreign_keys(&connection, migrated).map_err(|e| JournalError::Migration {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        Ok(Journal {
            writer: Arc::new(Writer::new(connection)),
            path: path.to_path_buf(),
            canonical,
        })
    }

    /// Opens an existing, current journal for reading only: no pragma is
    /// written, no migration run, nothing in the file changes. A journal
    /// another process is creating or migrating is waited for; one that
    /// does not exist yet, or was written by an older chronicle, is refused
    /// with what to run instead.
    ///
    /// SQLite needs a WAL journal's `-shm` and `-wal` files to read it: when
    /// they are absent (the last writer closed), this opens them, creating
    /// them in the journal's folder with the journal's mode; in a folder it
    /// may not write, reading works only while they exist.
    pub fn open_read_only(path: &Path) -> Result<Journal> {
        let not_created = |why: &str| JournalError::NotCreated {
            path: path.to_path_buf(),
            why: why.to_owned(),
        };
        let canonical = match existing(path)? {
            Some(canonical) => canonical,
            None => {
                // Perhaps being created this instant: wait for a creator
                // holding the folder's open lock, then look once more.
                let (folder, name) = split(path);
                if let (Ok(folder), Some(name)) = (std::fs::canonicalize(folder), name) {
                    drop(OpenLock::take(path, &folder.join(name), Access::Shared)?);
                }
                existing(path)?.ok_or_else(|| not_created("does not exist yet"))?
            }
        };
        let _checking = OpenLock::take(path, &canonical, Access::Shared)?;
        refuse_foreign(&canonical)?;
        if std::fs::metadata(&canonical).is_ok_and(|m| m.is_file() && m.len() == 0) {
            return Err(not_created("is empty"));
        }
        let sqlite = |source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let connection = Connection::open_with_flags(
            &canonical,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| JournalError::Invalid {
            path: path.to_path_buf(),
            what: format!(
                "cannot open it for reading: {e} (SQLite reads a WAL journal through its -wal and -shm files, and creates them when absent)"
            ),
        })?;
        // Connection settings only: none of these writes to the file.
        // `synchronous` is set so `status` reports what chronicle's
        // connections use; `query_only` refuses a write should one be tried.
        connection
            .execute_batch(
                "PRAGMA query_only = ON;
                 PRAGMA synchronous = FULL;
                 PRAGMA busy_timeout = 10000;",
            )
            .map_err(sqlite)?;
        if application_id(&connection).map_err(sqlite)? != APPLICATION_ID {
            return Err(not_created("holds no journal yet"));
        }
        let found = schema_version(&connection).map_err(sqlite)?;
        let needed = latest_version();
        if found < needed {
            return Err(JournalError::Outdated {
                path: path.to_path_buf(),
                found,
                needed,
            });
        }
        Ok(Journal {
            writer: Arc::new(Writer::new(connection)),
            path: path.to_path_buf(),
            canonical,
        })
    }
}

/// The canonical name of the existing file `path` names; none when it
/// does not exist (yet).
fn existing(path: &Path) -> Result<Option<PathBuf>> {
    match std::fs::canonicalize(path) {
        Ok(canonical) => Ok(Some(canonical)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(JournalError::Invalid {
            path: path.to_path_buf(),
            what: format!("cannot find it: {e}"),
        }),
    }
}

/// Foreign keys are off while migrations run, as SQLite's way to remake a
/// table under its own name needs (V10 remakes `attempts`, which `weeks`
/// references). After a migration every reference is checked once (not at
/// every open: that reads the whole history); then they are on for every
/// later write.
fn enforce_foreign_keys(connection: &Connection, migrated: bool) -> rusqlite::Result<()> {
    if migrated {
        let broken: Option<(String, String)> = connection
            .query_row("PRAGMA foreign_key_check", [], |row| {
                Ok((row.get(0)?, row.get(2)?))
            })
            .optional()?;
        if let Some((table, parent)) = broken {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                Some(format!(
                    "a row of `{table}` references a row of `{parent}` that does not exist"
                )),
            ));
        }
    }
    connection.execute_batch("PRAGMA foreign_keys = ON;")
}

fn application_id(connection: &Connection) -> rusqlite::Result<i32> {
    connection.query_row("PRAGMA application_id", [], |row| row.get(0))
}

/// The last migration applied to the journal; 0 before the first.
fn schema_version(connection: &Connection) -> rusqlite::Result<i64> {
    let history: bool = connection.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'refinery_schema_history'",
        [],
        |row| row.get(0),
    )?;
    if !history {
        return Ok(0);
    }
    connection.query_row(
        "SELECT coalesce(max(version), 0) FROM refinery_schema_history",
        [],
        |row| row.get(0),
    )
}

/// The schema version this build writes: its last embedded migration.
fn latest_version() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// The one name of the file `path` names, whether it exists yet or not:
/// symbolic links followed (a dangling one to where its target will be),
/// the folder made (0700) and resolved. Every spelling of one journal
/// gives the same answer, which keys its locks.
fn canonical_for_create(path: &Path) -> Result<PathBuf> {
    let invalid = |what: String| JournalError::Invalid {
        path: path.to_path_buf(),
        what,
    };
    let mut target = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let is_link = std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            let (folder, name) = split(&target);
            let name = name.ok_or_else(|| invalid("it names no file".into()))?;
            files::create_dir_all(&folder).map_err(|e| {
                invalid(format!(
                    "cannot create its folder {}: {e}",
                    folder.display()
                ))
            })?;
            let folder = std::fs::canonicalize(&folder).map_err(|e| {
                invalid(format!(
                    "cannot resolve its folder {}: {e}",
                    folder.display()
                ))
            })?;
            return Ok(folder.join(name));
        }
        let link = std::fs::read_link(&target)
            .map_err(|e| invalid(format!("cannot read the link {}: {e}", target.display())))?;
        target = split(&target).0.join(link);
    }
    Err(invalid(format!(
        "more than {MAX_LINKS} symbolic links lead from it"
    )))
}

/// `path`'s folder (`.` for a bare name) and file name.
fn split(path: &Path) -> (PathBuf, Option<&std::ffi::OsStr>) {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    (folder.to_path_buf(), path.file_name())
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
    // An SQLite file whose schema cannot be read is damaged, not foreign:
    // SQLite's own error says so (and the audit reports it).
    let damaged = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(damaged)?;
    let (application_id, tables): (i32, i64) = connection
        .query_row(
            "SELECT (SELECT application_id FROM pragma_application_id),
                    (SELECT count(*) FROM sqlite_master WHERE type = 'table')",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(damaged)?;
    if application_id == APPLICATION_ID || (application_id == 0 && tables == 0) {
        Ok(())
    } else {
        Err(foreign(format!(
            "an SQLite database of another application: application_id {application_id:#x}, {tables} tables"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change_counter(path: &Path) -> [u8; 4] {
        let bytes = std::fs::read(path).unwrap();
        bytes[24..28].try_into().unwrap()
    }

    #[test]
    fn every_name_of_a_journal_has_the_same_canonical_path() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("data/journal.db");
        let canonical = canonical_for_create(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("alias.db")).unwrap();
        assert_eq!(
            canonical_for_create(&dir.path().join("alias.db")).unwrap(),
            canonical
        );
        let dotted = dir.path().join("data/../data/./journal.db");
        assert_eq!(canonical_for_create(&dotted).unwrap(), canonical);
        Journal::open(&real).unwrap();
        assert_eq!(std::fs::canonicalize(&real).unwrap(), canonical);
    }

    #[test]
    fn a_read_only_open_changes_nothing_and_refuses_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let missing = Journal::open_read_only(&path).err().unwrap().to_string();
        assert!(missing.contains("does not exist yet"), "{missing}");
        assert!(!path.exists(), "a read-only open creates nothing");
        drop(Journal::open(&path).unwrap());
        let before = std::fs::read(&path).unwrap();
        let journal = Journal::open_read_only(&path).unwrap();
        journal.status().unwrap();
        let refused = journal.probe_write().err().unwrap().to_string();
        assert!(
            refused.contains("readonly") || refused.contains("read-only"),
            "{refused}"
        );
        drop(journal);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(change_counter(&path), before[24..28]);
    }

    #[test]
    fn a_read_only_open_of_an_older_schema_says_to_migrate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        drop(Journal::open(&path).unwrap());
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch(
                "DELETE FROM refinery_schema_history WHERE version = (SELECT max(version) FROM refinery_schema_history)",
            )
            .unwrap();
        drop(other);
        let error = Journal::open_read_only(&path).err().unwrap().to_string();
        assert!(error.contains("chronicle migrate"), "{error}");
    }

    #[test]
    fn a_second_writing_open_of_a_finished_journal_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        drop(Journal::open(&path).unwrap());
        let before = std::fs::read(&path).unwrap();
        drop(Journal::open(&path).unwrap());
        assert_eq!(change_counter(&path), before[24..28]);
    }

    #[test]
    fn the_journal_and_the_folder_made_for_it_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/journal.db");
        let journal = Journal::open(&path).unwrap();
        journal.probe_write().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("state")), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("state/journal.db-wal")), 0o600);
        assert_eq!(mode(&dir.path().join("state/journal.db-shm")), 0o600);
    }
}
