//! Files and folders only their owner may read: how chronicle creates the
//! journal, its lock, kept results, evidence and exports (0600), and the
//! folders it makes for them (0700), and how `status` tells that a file or
//! folder is open to group or others.
//!
//! Owns the modes. Not what goes in the files, nor where they live.
//!
//! Why explicit modes rather than a process umask of 077 set in `main`: a
//! umask is process-wide (it would also apply to whatever a library or a
//! child process creates), it does not apply when the journal is used as a
//! library (tests, benches), and it makes the rule invisible where a file
//! is made. A mode given at `open(2)` is still narrowed by the umask, so the
//! result is never wider than 0600 / 0700.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde::Serialize;

/// Mode of every file chronicle creates: read and write for the owner.
const FILE_MODE: u32 = 0o600;
/// Mode of every folder chronicle creates: the owner only.
const DIR_MODE: u32 = 0o700;

/// Creates (or truncates) `path` for writing, readable by its owner only.
/// An existing file is narrowed to 0600 too: what chronicle writes into it
/// is as private as a file it made.
pub fn create(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    // Only the owner may change a mode; a file of someone else's that we
    // may write keeps the mode its owner chose.
    match file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE)) {
        Err(e) if e.kind() != io::ErrorKind::PermissionDenied => Err(e),
        _ => Ok(file),
    }
}

/// Opens `path` for reading and writing without truncating it, creating it
/// readable by its owner only when absent (lock files).
pub fn open_or_create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
}

/// Creates `path` empty with mode 0600 unless something is there already;
/// an existing file is left exactly as it is. SQLite gives a database's
/// `-wal` and `-shm` files the mode of the database file, so creating the
/// journal this way makes all three private.
pub fn create_empty_if_absent(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `path` and every missing parent with mode 0700; folders that
/// exist keep their mode.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// A file or folder that others than its owner may read or write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exposure {
    /// The file or folder.
    pub path: String,
    /// Its permission bits in octal, e.g. `0644`.
    pub mode: String,
    /// Who may do what, e.g. `readable by group and others`.
    pub problem: String,
    /// The command that makes it private again.
    pub fix: String,
}

/// What is wrong with `path`'s mode, if anything: read or write bits for
/// group or others. An absent path is not exposed.
pub fn exposure(path: &Path) -> Option<Exposure> {
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.mode() & 0o7777;
    let problem = describe(mode)?;
    let private = if meta.is_dir() { "700" } else { "600" };
    Some(Exposure {
        path: path.display().to_string(),
        mode: format!("{mode:04o}"),
        problem,
        fix: format!("chmod {private} {}", path.display()),
    })
}

/// `readable by group, readable and writable by others`, or none when
/// neither group nor others may read or write.
fn describe(mode: u32) -> Option<String> {
    let can = |bits: u32| match (bits & 0o4 != 0, bits & 0o2 != 0) {
        (true, true) => Some("readable and writable"),
        (true, false) => Some("readable"),
        (false, true) => Some("writable"),
        (false, false) => None,
    };
    match (can(mode >> 3), can(mode)) {
        (None, None) => None,
        (Some(g), Some(o)) if g == o => Some(format!("{g} by group and others")),
        (Some(g), Some(o)) => Some(format!("{g} by group, {o} by others")),
        (Some(g), None) => Some(format!("{g} by group")),
        (None, Some(o)) => Some(format!("{o} by others")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn what_chronicle_creates_is_for_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_dir_all(&nested).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        let file = nested.join("f");
        create(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        let lock = nested.join("l");
        open_or_create(&lock).unwrap();
        assert_eq!(mode(&lock), 0o600);
        let journal = nested.join("j");
        create_empty_if_absent(&journal).unwrap();
        assert_eq!(mode(&journal), 0o600);
    }

    #[test]
    fn an_existing_file_is_narrowed_by_create_and_left_alone_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"kept").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_empty_if_absent(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
        assert_eq!(mode(&path), 0o644);
        create(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn exposure_names_who_may_read_or_write_and_the_fix() {
        assert_eq!(describe(0o600), None);
        assert_eq!(describe(0o700), None);
        assert_eq!(describe(0o711), None);
        assert_eq!(describe(0o644).unwrap(), "readable by group and others");
        assert_eq!(describe(0o640).unwrap(), "readable by group");
        assert_eq!(
            describe(0o664).unwrap(),
            "readable and writable by group, readable by others"
        );
        assert_eq!(describe(0o602).unwrap(), "writable by others");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let found = exposure(&path).unwrap();
        assert_eq!(found.mode, "0644");
        assert!(found.fix.starts_with("chmod 600 "), "{}", found.fix);
        assert_eq!(exposure(&dir.path().join("absent")), None);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(exposure(dir.path()).unwrap().fix.starts_with("chmod 700 "));
    }
}
