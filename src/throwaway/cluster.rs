//! Throwaway PostgreSQL clusters for tests and the `demo` command: finds the machine's
//! server binaries, runs initdb/pg_ctl in a private temp dir (as the `postgres` user when
//! we are root), optionally with extra server settings and files (a TLS certificate), and
//! hands out per-database URLs. It does not pick which database a test uses
//! (`CHRONICLE_TEST_DATABASE_URL` handling lives with the test harness), nor migrate, nor
//! make certificates.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use tempfile::TempDir;
use tokio_postgres::NoTls;

/// initdb and postgres refuse to run as root; this is who they run as instead.
const SERVER_USER: &str = "postgres";
/// A port picked by binding :0 can be grabbed by someone else before postgres binds it.
const PORT_RETRIES: usize = 3;
/// Enough of the server log to show why a start failed without burying the error.
const LOG_TAIL_LINES: usize = 30;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian package \
         `postgresql` (apt-get install postgresql) or put initdb on PATH"
    )]
    BinariesNotFound,
    #[error(
        "running as root, so PostgreSQL must run as the unprivileged user `postgres`, which does \
         not exist: install the Debian package `postgresql` (it creates that user) or run as a \
         non-root user"
    )]
    ServerUserMissing,
    #[error("throwaway PostgreSQL: {context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("throwaway PostgreSQL: `{command}` failed ({status}):\n{output}")]
    Command {
        command: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error(
        "throwaway PostgreSQL failed to start on port {port} (data dir {data_dir}):\n\
         {pg_ctl_output}\n--- last lines of {log_file} ---\n{log_tail}"
    )]
    StartFailed {
        port: u16,
        data_dir: PathBuf,
        pg_ctl_output: String,
        log_file: PathBuf,
        log_tail: String,
    },
    #[error(
        "invalid database name {0:?}: use 1-63 ASCII letters, digits or underscores so it can go \
         into a URL unescaped"
    )]
    InvalidDatabaseName(String),
    #[error(
        "invalid server setting name {0:?}: use ASCII letters, digits, `_` and `.` (it goes \
         into a shell command line)"
    )]
    InvalidSettingName(String),
    #[error(
        "invalid data dir file name {0:?}: use a plain file name (ASCII letters, digits, `_`, \
         `.`, `-`)"
    )]
    InvalidFileName(String),
    #[error("throwaway PostgreSQL at {url}: {source}")]
    Sql {
        url: String,
        source: tokio_postgres::Error,
    },
}

/// A running throwaway cluster. Dropping it stops the server and deletes its files.
pub struct Cluster {
    /// Directory holding initdb/pg_ctl, so restart() runs the version that made the data dir.
    bin_dir: PathBuf,
    /// Whether server binaries go through `runuser -u postgres`, since they refuse to run as root.
    as_server_user: bool,
    /// Kept across stop()/restart() so URLs handed out earlier stay valid.
    port: u16,
    /// Whether we believe the server is up; makes stop() idempotent.
    running: bool,
    /// The cluster's data dir, exposed for tests that inspect or damage it.
    data_dir: PathBuf,
    /// Private Unix socket dir, so we never collide with a system cluster's /var/run/postgresql.
    socket_dir: PathBuf,
    /// Server log, whose tail goes into start errors.
    log_file: PathBuf,
    /// `-c name=value` pairs from start_with, kept so restart() starts the same server.
    settings: Vec<(String, String)>,
    /// Owns everything on disk; declared last so it is removed only after Drop stopped the server.
    root: TempDir,
}

impl Cluster {
    /// initdb a fresh cluster in a new temp dir and start it on a free 127.0.0.1 port.
    pub fn start() -> Result<Cluster, ClusterError> {
        Cluster::start_with(&[], &[])
    }

    /// Like start(), with server settings passed as `-c name=value` (e.g. `ssl=on`), and
    /// files written into the data dir before the server starts: owned by the server user
    /// and mode 0600, as the server demands of a key file. Relative paths in settings such
    /// as `ssl_cert_file` are taken by the server from the data dir, so
    /// `&[("ssl_cert_file", "server.crt")]` with a `server.crt` file works.
    pub fn start_with(
        settings: &[(&str, &str)],
        data_files: &[(&str, &[u8])],
    ) -> Result<Cluster, ClusterError> {
        let started = Instant::now();
        for (name, _) in settings {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
            if !valid {
                return Err(ClusterError::InvalidSettingName((*name).to_owned()));
            }
        }
        for (name, _) in data_files {
            let valid = !name.is_empty()
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !valid {
                return Err(ClusterError::InvalidFileName((*name).to_owned()));
            }
        }
        let bin_dir = find_bin_dir().ok_or(ClusterError::BinariesNotFound)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let as_server_user = unsafe { libc::geteuid() } == 0;
        let server_uid_gid = as_server_user.then(server_user_ids).transpose()?;

        // Always /tmp rather than $TMPDIR: the `postgres` user must be able to traverse every
        // parent, and Unix socket paths are limited to ~107 bytes.
        let root = tempfile::Builder::new()
            .prefix("chronicle-pg-")
            .tempdir_in("/tmp")
            .map_err(|e| io_error("creating a temp dir under /tmp", e))?;
        let socket_dir = root.path().join("socket");
        fs::create_dir(&socket_dir).map_err(|e| io_error("creating the socket dir", e))?;
        if let Some((uid, gid)) = server_uid_gid {
            // The temp dir is created 0700 by us; owning it lets `postgres` create the data
            // dir and log in it and bind its socket, while root can still reach everything.
            for dir in [root.path(), &socket_dir] {
                chown(dir, uid, gid)?;
            }
        }

        let mut cluster = Cluster {
            bin_dir,
            as_server_user,
            port: 0,
            running: false,
            data_dir: root.path().join("data"),
            socket_dir,
            log_file: root.path().join("server.log"),
            settings: settings
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            root,
        };
        let mut initdb = cluster.server_command("initdb");
        initdb
            .arg("-D")
            .arg(&cluster.data_dir)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        run(initdb)?;
        for (name, contents) in data_files {
            let path = cluster.data_dir.join(name);
            fs::write(&path, contents)
                .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o600)))
                .map_err(|e| io_error(&format!("writing {}", path.display()), e))?;
            if let Some((uid, gid)) = server_uid_gid {
                chown(&path, uid, gid)?;
            }
        }

        let mut attempt = 0;
        loop {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start() {
                Ok(()) => break,
                Err(ClusterError::StartFailed { log_tail, .. })
                    if attempt < PORT_RETRIES && log_tail.contains("Address already in use") =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
        tracing::debug!(
            port = cluster.port,
            data_dir = %cluster.data_dir.display(),
            elapsed_ms = started.elapsed().as_millis(),
            "started throwaway PostgreSQL cluster"
        );
        Ok(cluster)
    }

    /// URL for `database` as the trusted superuser `postgres` over TCP.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Create `name` (1-63 ASCII letters, digits, underscores) and return its URL.
    pub async fn create_database(&self, name: &str) -> Result<String, ClusterError> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(ClusterError::InvalidDatabaseName(name.to_owned()));
        }
        let admin_url = self.url("postgres");
        let sql_error = |source| ClusterError::Sql {
            url: admin_url.clone(),
            source,
        };
        let (client, connection) = tokio_postgres::connect(&admin_url, NoTls)
            .await
            .map_err(sql_error)?;
        // The connection task ends by itself once `client` is dropped at the end of this fn.
        tokio::spawn(connection);
        // Quoted so mixed-case names are kept as given, matching the URL.
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(sql_error)?;
        Ok(self.url(name))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stop the server as a managed database restarts (`-m fast`): sessions
    /// are cut, committed data survives even though the cluster runs with
    /// fsync off. A no-op if already stopped.
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        self.stop_with("fast")
    }

    fn stop_with(&mut self, mode: &str) -> Result<(), ClusterError> {
        if !self.running {
            return Ok(());
        }
        let mut stop = self.server_command("pg_ctl");
        stop.arg("-D")
            .arg(&self.data_dir)
            .args(["-m", mode, "-w", "stop"]);
        run(stop)?;
        self.running = false;
        Ok(())
    }

    /// Start the server again on the same port and data dir (after stop()); a no-op if running.
    pub fn restart(&mut self) -> Result<(), ClusterError> {
        if self.running {
            return Ok(());
        }
        self.pg_ctl_start()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn pg_ctl_start(&mut self) -> Result<(), ClusterError> {
        // The log is appended to across restarts; only this attempt's lines explain its failure.
        let log_offset = fs::metadata(&self.log_file).map_or(0, |m| m.len());
        let mut server_options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            self.port,
            self.socket_dir.display()
        );
        // pg_ctl hands -o to /bin/sh: quote each value (names were checked in start_with).
        for (name, value) in &self.settings {
            server_options.push_str(&format!(" -c {name}={}", shell_quote(value)));
        }
        let mut start = self.server_command("pg_ctl");
        start
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-t", "60", "-o", &server_options, "start"]);
        let output = spawn(start)?;
        if !output.status.success() {
            return Err(ClusterError::StartFailed {
                port: self.port,
                data_dir: self.data_dir.clone(),
                pg_ctl_output: combined_output(&output),
                log_file: self.log_file.clone(),
                log_tail: log_tail(&self.log_file, log_offset),
            });
        }
        self.running = true;
        Ok(())
    }

    fn server_command(&self, program: &str) -> Command {
        let program = self.bin_dir.join(program);
        let mut command = if self.as_server_user {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", SERVER_USER, "--"]).arg(program);
            runuser
        } else {
            Command::new(program)
        };
        // Our cwd may be unreadable to the `postgres` user (e.g. /root), which initdb warns about.
        command.current_dir(self.root.path()).stdin(Stdio::null());
        command
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Its data is thrown away: no need to shut down cleanly. Nothing
        // useful to do with a failure; the temp dir is removed regardless.
        let _ = self.stop_with("immediate");
    }
}

/// Whether `Cluster::start` can find server binaries, so `demo` can decide whether to start one.
pub fn binaries_available() -> bool {
    find_bin_dir().is_some()
}

/// The first PATH dir holding both initdb and pg_ctl, else the newest Debian
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps initdb off PATH).
fn find_bin_dir() -> Option<PathBuf> {
    let has_binaries =
        |dir: &Path| is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl"));
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|dir| has_binaries(dir))
    {
        return Some(dir);
    }
    fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            // Numeric compare, so 9.6 < 15 and 15 < 16.
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            has_binaries(&bin).then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn server_user_ids() -> Result<(libc::uid_t, libc::gid_t), ClusterError> {
    let name = std::ffi::CString::new(SERVER_USER).expect("no NUL in user name");
    // SAFETY: `name` is a valid C string; the returned record is copied out before any other
    // getpw* call could overwrite it.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(ClusterError::ServerUserMissing);
    }
    // SAFETY: non-null pointer to a passwd record returned by getpwnam.
    let entry = unsafe { &*entry };
    Ok((entry.pw_uid, entry.pw_gid))
}

fn chown(path: &Path, uid: libc::uid_t, gid: libc::gid_t) -> Result<(), ClusterError> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| io_error(&format!("chown {} to `{SERVER_USER}`", path.display()), e))
}

/// Bind :0 and release it: racy, which is why start retries when the port is taken.
fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| io_error("finding a free port on 127.0.0.1", e))
}

fn spawn(mut command: Command) -> Result<Output, ClusterError> {
    command
        .output()
        .map_err(|e| io_error(&format!("running `{}`", describe(&command)), e))
}

fn run(command: Command) -> Result<(), ClusterError> {
    let description = describe(&command);
    let output = spawn(command)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(ClusterError::Command {
            command: description,
            status: output.status,
            output: combined_output(&output),
        })
    }
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `value` as one single-quoted shell word.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn combined_output(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    text.trim_end().to_owned()
}

/// The last lines of the log written after `offset`; a placeholder if it cannot be read, since
/// this only decorates an error that is already being reported.
fn log_tail(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    let read = fs::File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(offset))?;
        file.read_to_string(&mut text)
    });
    if let Err(e) = read {
        return format!("(could not read the server log: {e})");
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

fn io_error(context: &str, source: std::io::Error) -> ClusterError {
    ClusterError::Io {
        context: context.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Panics with the error's Display text, which is what a developer needs to act on.
    fn start() -> Cluster {
        Cluster::start().unwrap_or_else(|e| panic!("{e}"))
    }

    async fn select_one(url: &str) -> Result<i32, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(connection);
        client.query_one("select 1", &[]).await?.try_get(0)
    }

    #[tokio::test]
    async fn databases_survive_stop_and_restart() {
        let mut cluster = start();
        let first = cluster
            .create_database("first")
            .await
            .expect("create first");
        let second = cluster
            .create_database("Second")
            .await
            .expect("create Second");
        assert_eq!(first, cluster.url("first"));
        for url in [&first, &second] {
            assert_eq!(select_one(url).await.expect("select 1"), 1);
        }

        cluster.stop().expect("stop");
        cluster.stop().expect("stop is idempotent");
        assert!(select_one(&first).await.is_err(), "server still answers");

        let port = cluster.port();
        cluster.restart().expect("restart");
        assert_eq!(cluster.port(), port);
        for url in [&first, &second] {
            assert_eq!(select_one(url).await.expect("select 1 after restart"), 1);
        }
    }

    #[tokio::test]
    async fn settings_and_data_files_reach_the_server_and_survive_restart() {
        let mut cluster = Cluster::start_with(
            &[("cluster_name", "it's set"), ("work_mem", "5MB")],
            &[("note.txt", b"hello")],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let note = cluster.data_dir().join("note.txt");
        assert_eq!(fs::read(&note).unwrap(), b"hello");
        assert_eq!(
            fs::metadata(&note).unwrap().permissions().mode() & 0o777,
            0o600
        );
        cluster.stop().expect("stop");
        cluster.restart().expect("restart");
        let (client, connection) = tokio_postgres::connect(&cluster.url("postgres"), NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        let work_mem: String = client
            .query_one("SHOW work_mem", &[])
            .await
            .expect("SHOW")
            .get(0);
        assert_eq!(work_mem, "5MB");
        let name: String = client
            .query_one("SHOW cluster_name", &[])
            .await
            .expect("SHOW")
            .get(0);
        assert_eq!(name, "it's set", "quoted through pg_ctl's shell");
        assert!(matches!(
            Cluster::start_with(&[("bad name", "x")], &[]),
            Err(ClusterError::InvalidSettingName(_))
        ));
        assert!(matches!(
            Cluster::start_with(&[], &[("../escape", b"x")]),
            Err(ClusterError::InvalidFileName(_))
        ));
    }

    #[tokio::test]
    async fn drop_stops_server_and_removes_files() {
        let cluster = start();
        let url = cluster.url("postgres");
        let data_dir = cluster.data_dir().to_owned();
        assert!(data_dir.join("PG_VERSION").exists());
        assert!(matches!(
            cluster.create_database("bad-name").await,
            Err(ClusterError::InvalidDatabaseName(_))
        ));
        drop(cluster);
        assert!(!data_dir.exists(), "data dir left behind");
        assert!(select_one(&url).await.is_err(), "server still answers");
    }
}
