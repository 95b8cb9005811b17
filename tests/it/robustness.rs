//! chronicle with the process around it misbehaving: one journal under
//! several names, many processes opening a new journal at once, an HTTP
//! client that stalls while the daemon stops, a damaged file, read-only
//! commands that must not write, and the modes of the files it creates.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::daemon::{free_port, get, start};
use crate::helpers::{
    TestApp, command, eventually, quick_sim, run_chronicle, schedule, spawn_app, text,
};

/// A config beside the app's, the same but for `journal.path`.
fn config_naming(app: &TestApp, file: &str, journal: &str) -> PathBuf {
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    let path = app.dir.path().join(file);
    std::fs::write(
        &path,
        config.replacen("path = \"journal.db\"", &format!("path = \"{journal}\""), 1),
    )
    .unwrap();
    path
}

fn edit_config(app: &TestApp, from: &str, to: &str) {
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    assert!(config.contains(from), "{from:?} not in config");
    app.set_config(&config.replacen(from, to, 1));
}

fn append_config(app: &TestApp, text: &str) {
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    app.set_config(&format!("{config}\n{text}\n"));
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

async fn sigterm_and_wait(mut child: tokio::process::Child, within: Duration) -> Option<i32> {
    unsafe { libc::kill(child.id().expect("running") as i32, libc::SIGTERM) };
    tokio::time::timeout(within, child.wait())
        .await
        .expect("the daemon stops after SIGTERM")
        .unwrap()
        .code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_name_of_one_journal_meets_the_runner_lock_and_nothing_is_submitted_twice() {
    let app = spawn_app(quick_sim(), &schedule(6, 0)).await;
    let (daemon, _lines) = start(&app, &[]);
    let pid = daemon.id().unwrap();
    let lock = app.dir.path().join("journal.db.lock");
    eventually(
        "the daemon holds the runner lock",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(&lock).is_ok_and(|held| held.contains(&format!("pid {pid} ")))
        },
    )
    .await;

    std::os::unix::fs::symlink("journal.db", app.dir.path().join("alias.db")).unwrap();
    let absolute = app.journal_path().canonicalize().unwrap();
    std::fs::create_dir(app.dir.path().join("sub")).unwrap();
    let names = [
        ("symlink", "alias.db".to_owned()),
        ("absolute", absolute.display().to_string()),
        ("dotted", "sub/../journal.db".to_owned()),
        ("through a linked folder", "here/journal.db".to_owned()),
    ];
    std::os::unix::fs::symlink(".", app.dir.path().join("here")).unwrap();
    for (index, (how, journal)) in names.iter().enumerate() {
        let config = config_naming(&app, &format!("config-{index}.toml"), journal);
        // A second daemon is refused by every name. (`backfill`, `cancel`
        // and `rerun` become requests to this daemon: `operations`.)
        for args in [&["run"][..]] {
            let output = run_chronicle(&config, args).await;
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{how}: {}", text(&output));
            assert!(
                stderr.contains("in use by another chronicle runner")
                    && stderr.contains(&format!("pid {pid} "))
                    && stderr.contains("chronicle run"),
                "{how}: the refusal names the holder: {stderr}"
            );
        }
    }
    std::fs::hard_link(app.journal_path(), app.dir.path().join("linked.db")).unwrap();
    let config = config_naming(&app, "config-linked.toml", "linked.db");
    let output = run_chronicle(&config, &["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("hard links"),
        "{}",
        text(&output)
    );
    std::fs::remove_file(app.dir.path().join("linked.db")).unwrap();

    // The daemon's cron has not fired: every create AMC saw would be one
    // of a runner that got past the lock.
    assert!(app.ledger().is_empty(), "{:?}", app.ledger());
    assert_eq!(
        sigterm_and_wait(daemon, Duration::from_secs(30)).await,
        Some(0)
    );
    // Free again, any name may run it: once, each week once.
    let config = config_naming(&app, "config-alias.toml", "alias.db");
    let output = run_chronicle(&config, &["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(app.ledger().len(), 6, "each week submitted once");
}

/// What one process of a round said.
fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_processes_opening_a_new_journal_at_once_all_succeed_or_wait() {
    const ROUNDS: usize = 5;
    let app = spawn_app(quick_sim(), &schedule(2, 0)).await;
    let mut statuses_before_creation = 0;
    for round in 0..ROUNDS {
        let journal = format!("round-{round}/journal.db");
        let config = config_naming(&app, &format!("config-{round}.toml"), &journal);
        let daemon = command(&config, &["run"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut others = Vec::new();
        for index in 0..9 {
            let args: &[&str] = match index % 3 {
                0 => &["status"],
                1 => &["schedules"],
                _ => &["pause", "weekly"],
            };
            others.push((args, command(&config, args).output()));
        }
        for (args, output) in others {
            let output = output.await.unwrap();
            let what = said(&output);
            assert!(
                !what.contains("not a chronicle journal") && !what.contains("migrations"),
                "round {round}, {args:?}: {}",
                text(&output)
            );
            if args == ["status"] && output.status.code() == Some(1) {
                // Asked before any process had made the file: a true answer.
                assert!(what.contains("does not exist yet"), "{}", text(&output));
                statuses_before_creation += 1;
            } else {
                assert_eq!(
                    output.status.code(),
                    Some(0),
                    "round {round}, {args:?}: {}",
                    text(&output)
                );
            }
        }
        let lock = app.dir.path().join(format!("{journal}.lock"));
        eventually(
            "the daemon holds the runner lock",
            Duration::from_secs(30),
            || async {
                std::fs::read_to_string(&lock).is_ok_and(|held| held.contains("chronicle run"))
            },
        )
        .await;
        assert_eq!(
            sigterm_and_wait(daemon, Duration::from_secs(30)).await,
            Some(0),
            "round {round}: the daemon started and stopped cleanly"
        );
        let status = run_chronicle(&config, &["status"]).await;
        assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    }
    eprintln!(
        "{ROUNDS} rounds of ten concurrent first opens passed; {statuses_before_creation} status calls came before the journal existed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_http_client_does_not_hold_the_daemon_past_its_shutdown_timeout() {
    const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
    const MARGIN: Duration = Duration::from_secs(5);
    let app = spawn_app(quick_sim(), &schedule(2, 0)).await;
    let port = free_port();
    // The header timeout is far away: only the bounded drain can end the
    // stalled connection in time.
    append_config(
        &app,
        &format!(
            "[scheduler]\nshutdown_timeout = \"2s\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\nheader_read_timeout = \"1h\"\n"
        ),
    );
    let (daemon, lines) = start(&app, &[]);
    eventually(
        "the health endpoint answers",
        Duration::from_secs(30),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        },
    )
    .await;
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    // Answered after it: the server has taken the stalled connection on.
    let (code, body) = get(port, "/healthz").await;
    assert_eq!(code, 200, "{body}");

    let stopping = Instant::now();
    let code = sigterm_and_wait(daemon, SHUTDOWN_TIMEOUT + MARGIN).await;
    let took = stopping.elapsed();
    assert_eq!(code, Some(0), "{}", lines.lock().unwrap().join("\n"));
    eprintln!(
        "with a stalled HTTP client the daemon stopped in {took:?} (shutdown_timeout {SHUTDOWN_TIMEOUT:?})"
    );
    drop(stalled);
}

/// Overwrites `bytes` at `offset` of the file.
fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
}

/// Moves everything in the WAL into the main file, so the main file is
/// the whole journal (and what a test damages is what SQLite reads).
fn checkpoint(path: &Path) {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_damaged_in_an_index_page_fails_the_audit_with_a_finding_naming_the_file() {
    let app = spawn_app(quick_sim(), &schedule(3, 0)).await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let audit = app.chronicle(&["audit"]).await;
    assert_eq!(audit.status.code(), Some(0), "{}", text(&audit));

    let path = app.journal_path();
    checkpoint(&path);
    let (page_size, root): (i64, i64) = {
        let connection = rusqlite::Connection::open(&path).unwrap();
        let page_size = connection
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .unwrap();
        let root = connection
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE type = 'index' AND name = 'weeks_by_start'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        (page_size, root)
    };
    overwrite(&path, ((root - 1) * page_size) as u64, &[0xee; 8]);

    let audit = app.chronicle(&["audit"]).await;
    let stdout = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(audit.status.code(), Some(1), "{}", text(&audit));
    assert!(!stdout.contains("audit passed"), "{}", text(&audit));
    assert!(stdout.contains("quick_check"), "{}", text(&audit));
    let audit = app.chronicle(&["audit", "--json"]).await;
    assert_eq!(audit.status.code(), Some(1), "{}", text(&audit));
    let report: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    let first = &report["findings"][0];
    assert_eq!(first["check"], "file", "{report}");
    assert!(
        first["subject"].as_str().unwrap().ends_with("journal.db"),
        "{report}"
    );

    // A header SQLite cannot read at all (page size 3): still exit 1, with
    // the reason, never a pass.
    overwrite(&path, 16, &[0x00, 0x03]);
    let audit = app.chronicle(&["audit", "--json"]).await;
    assert_eq!(audit.status.code(), Some(1), "{}", text(&audit));
    let report: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(report["findings"][0]["check"], "file", "{report}");
    assert!(
        report["findings"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("SQLite cannot read the journal"),
        "{report}"
    );
}

/// The journal's main file and its WAL (an absent WAL reads as empty).
fn snapshot(path: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    (
        std::fs::read(path).unwrap(),
        std::fs::read(PathBuf::from(wal)).unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_commands_leave_the_journal_file_as_it_was() {
    let app = spawn_app(quick_sim(), &schedule(3, 0)).await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let path = app.journal_path();
    checkpoint(&path);
    let week: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT min(week_start) FROM weeks", [], |row| row.get(0))
        .unwrap();
    let evidence = app.dir.path().join("evidence.ndjson");
    let evidence = evidence.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["status", "--json"],
        vec!["weeks", "weekly"],
        vec!["weeks", "weekly", "--grid"],
        vec!["executions"],
        vec!["events"],
        vec!["lineage", &week],
        vec!["export", "--what", "events", "--format", "csv"],
        vec!["export", "--evidence", evidence],
        vec!["audit"],
        vec!["audit", "--json"],
    ];
    let before = snapshot(&path);
    for args in &commands {
        let output = app.chronicle(args).await;
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", text(&output));
        let after = snapshot(&path);
        assert_eq!(
            after.0[24..28],
            before.0[24..28],
            "{args:?} changed the file change counter"
        );
        assert!(after == before, "{args:?} changed the journal's bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_chronicle_creates_is_readable_by_its_owner_only() {
    let app = spawn_app(quick_sim(), &schedule(2, 0)).await;
    edit_config(&app, "path = \"journal.db\"", "path = \"state/journal.db\"");
    edit_config(
        &app,
        "poll_interval = \"20ms\"",
        "poll_interval = \"20ms\"\nresults_dir = \"results\"",
    );
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let dir = app.dir.path();
    assert_eq!(mode(&dir.join("state")), 0o700);
    assert_eq!(mode(&dir.join("state/journal.db")), 0o600);
    assert_eq!(mode(&dir.join("state/journal.db.lock")), 0o600);
    assert_eq!(mode(&dir.join("results")), 0o700);
    let kept: Vec<PathBuf> = std::fs::read_dir(dir.join("results"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    for file in &kept {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    let evidence = dir.join("evidence.ndjson");
    let exported = dir.join("weeks.csv");
    for args in [
        vec!["export", "--evidence", evidence.to_str().unwrap()],
        vec![
            "export",
            "--what",
            "weeks",
            "--format",
            "csv",
            "--out",
            exported.to_str().unwrap(),
        ],
    ] {
        let output = app.chronicle(&args).await;
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    }
    assert_eq!(mode(&evidence), 0o600);
    assert_eq!(mode(&exported), 0o600);

    // The WAL and shared-memory files exist while a process has the
    // journal open: SQLite gives them the journal's mode.
    let (daemon, _lines) = start(&app, &[]);
    let wal = dir.join("state/journal.db-wal");
    let shm = dir.join("state/journal.db-shm");
    let lock = dir.join("state/journal.db.lock");
    eventually(
        "the daemon's lock and WAL files",
        Duration::from_secs(30),
        || async {
            wal.exists()
                && shm.exists()
                && std::fs::read_to_string(&lock).is_ok_and(|held| held.contains("chronicle run"))
        },
    )
    .await;
    assert_eq!(mode(&wal), 0o600);
    assert_eq!(mode(&shm), 0o600);
    let status = app.chronicle(&["status", "--json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["permissions"], serde_json::json!([]), "{report}");
    assert_eq!(
        sigterm_and_wait(daemon, Duration::from_secs(30)).await,
        Some(0)
    );

    // Opened up by hand: status says so, in text and JSON.
    let journal = dir.join("state/journal.db");
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o644)).unwrap();
    let status = app.chronicle(&["status"]).await;
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(
        stdout.contains("warning:")
            && stdout.contains("journal.db is readable by group and others (mode 0644)")
            && stdout.contains("chmod 600"),
        "{stdout}"
    );
    let status = app.chronicle(&["status", "--json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let exposed = &report["permissions"][0];
    assert_eq!(exposed["mode"], "0644", "{report}");
    assert!(
        exposed["path"]
            .as_str()
            .unwrap()
            .ends_with("state/journal.db"),
        "{report}"
    );
}
