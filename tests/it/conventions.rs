//! The ecosystem's small conventions (issue 17): shell completions and a
//! man page generated from the command line itself, `--version` with the
//! build's commit, and systemd's notify protocol spoken by the real
//! daemon (READY=1, WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1).

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::helpers::{command, quick_sim, run_chronicle, schedule, spawn_app, text};

#[tokio::test]
async fn completions_the_man_page_and_the_version_come_from_the_command_line() {
    let app = spawn_app(quick_sim(), &schedule(1, 0)).await;
    for shell in ["bash", "zsh", "fish"] {
        let output = app.chronicle(&["completions", shell]).await;
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            script.contains("chronicle") && script.contains("rerun") && script.contains("backup"),
            "{shell}: {script}"
        );
    }
    let unknown = app.chronicle(&["completions", "tcsh"]).await;
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    let man = app.chronicle(&["man"]).await;
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH chronicle"),
        "{page}"
    );
    assert!(page.contains("rerun") && page.contains("alerts"), "{page}");
    let version = run_chronicle(&app.config_path, &["--version"]).await;
    let said = String::from_utf8_lossy(&version.stdout);
    assert!(
        said.starts_with(&format!("chronicle {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_tells_systemd_it_is_ready_pings_the_watchdog_and_says_it_is_stopping() {
    let app = spawn_app(quick_sim(), &schedule(1, 0)).await;
    let socket_path = app.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut daemon = command(&app.config_path, &["run"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .spawn()
        .unwrap();
    let pid = daemon.id().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 512];
        while let Ok(n) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
            let stopping = message.contains("STOPPING=1");
            seen.push(message);
            if stopping {
                break;
            }
        }
        seen
    });
    // Half of 400 ms: at least a few pings in 1.5 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("the daemon stops")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let seen = reader.join().unwrap();
    assert!(
        seen[0].contains("READY=1") && seen[0].contains(&format!("MAINPID={pid}")),
        "{seen:?}"
    );
    let pings = seen.iter().filter(|m| m.as_str() == "WATCHDOG=1").count();
    assert!(pings >= 3, "{seen:?}");
    assert_eq!(
        seen.last().map(String::as_str),
        Some("STOPPING=1"),
        "{seen:?}"
    );
}
