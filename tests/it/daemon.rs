//! `chronicle run` as users run it: the real binary as a daemon with an
//! every-second cron against the simulator, its journaled decisions,
//! /healthz and /metrics over HTTP, SIGTERM, SIGHUP, pause, and the next
//! start resuming what was live.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;

use crate::helpers::{TestApp, command, connect, eventually, quick_sim, spawn_app, text};

fn every_second(backfill_weeks: u32) -> String {
    crate::helpers::schedule(backfill_weeks, 0).replace("0 0 6 * * Mon", "* * * * * *")
}

/// A free port on 127.0.0.1 for the daemon's HTTP endpoints.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn with_daemon_settings(app: &TestApp, port: u16) {
    with_grace(app, port, "1s");
}

fn with_grace(app: &TestApp, port: u16, shutdown_timeout: &str) {
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    app.set_config(&format!(
        "{config}\n[scheduler]\nshutdown_timeout = \"{shutdown_timeout}\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
}

/// `(kind, payload)` of every event, in order.
fn events(journal: &Path) -> Vec<(String, serde_json::Value)> {
    let connection = rusqlite::Connection::open(journal).unwrap();
    let mut statement = connection
        .prepare("SELECT kind, payload FROM events ORDER BY seq")
        .unwrap();
    statement
        .query_map([], |row| {
            let payload: String = row.get(1)?;
            Ok((row.get(0)?, serde_json::from_str(&payload).unwrap()))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn firing_reasons(journal: &Path) -> Vec<String> {
    events(journal)
        .into_iter()
        .filter(|(kind, _)| kind == "schedule.firing")
        .map(|(_, payload)| payload["reason"].as_str().unwrap().to_owned())
        .collect()
}

fn count(journal: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(journal)
        .unwrap()
        .query_row(sql, [], |row| row.get(0))
        .unwrap_or(0)
}

/// Between two decisions that start a run there is always the first run's
/// end: never two runners on one collection.
fn assert_never_two_runs_at_once(journal: &Path) {
    let mut running = false;
    for (kind, payload) in events(journal) {
        match kind.as_str() {
            "schedule.firing" => {
                let reason = payload["reason"].as_str().unwrap();
                if !reason.starts_with("skipped") {
                    assert!(!running, "a second run started while one ran: {payload}");
                    running = true;
                }
            }
            "schedule.run_finished" => running = false,
            // A stop cuts or ends every run.
            "daemon.stopped" => running = false,
            _ => {}
        }
    }
}

/// A plain HTTP/1.1 GET: status code and body.
pub(crate) async fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (code, body)
}

/// Starts the daemon with stderr collected line by line (so a full pipe
/// never blocks it).
pub(crate) fn start(app: &TestApp, extra: &[&str]) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    let mut child = command(&app.config_path, &args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let stderr = child.stderr.take().unwrap();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    (child, lines)
}

async fn stop(mut daemon: Child, lines: &Mutex<Vec<String>>) {
    let pid = daemon.id().expect("running") as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("the daemon stops within 30 s of SIGTERM")
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "stderr:\n{}",
        lines.lock().unwrap().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_journals_its_decisions_stops_on_sigterm_and_the_next_start_resumes_what_was_live()
 {
    // Executions outlive the first daemon: they are live when it stops.
    let mut sim = quick_sim();
    sim.execution_duration = Duration::from_secs(15);
    let app = spawn_app(sim, &every_second(3)).await;
    let port = free_port();
    with_daemon_settings(&app, port);
    let journal = app.journal_path();
    let (daemon, lines) = start(&app, &["--log-format", "json"]);

    eventually(
        "three submitted executions",
        Duration::from_secs(30),
        || async {
            count(
                &journal,
                "SELECT count(*) FROM attempts WHERE state = 'submitted'",
            ) == 3
        },
    )
    .await;
    eventually(
        "a firing skipped for overlap",
        Duration::from_secs(30),
        || async {
            firing_reasons(&journal)
                .iter()
                .any(|r| r == "skipped-overlap")
        },
    )
    .await;

    let (code, body) = get(port, "/healthz").await;
    assert_eq!(code, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["journal_writable"], true, "{body}");
    let (code, metrics) = get(port, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("chronicle_weeks{status=\"running\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("chronicle_executions{state=\"submitted\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE chronicle_outbox_pending gauge"),
        "{metrics}"
    );
    assert!(
        metrics.contains("chronicle_execution_id_population_ratio"),
        "{metrics}"
    );
    // Skipped firings are counted per schedule, and each overlap alerted.
    let skipped: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("chronicle_skipped_firings_total{schedule=\"weekly\"} ")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(skipped >= 1.0, "{metrics}");
    assert!(
        count(
            &journal,
            "SELECT count(*) FROM alerts WHERE kind = 'firing_skipped'"
        ) >= 1,
        "an overlap raises an alert"
    );

    stop(daemon, &lines).await;
    assert_eq!(app.ledger().len(), 3);
    assert_eq!(
        count(
            &journal,
            "SELECT count(*) FROM attempts WHERE state = 'submitted'"
        ),
        3,
        "live executions are left running in AMC, not cancelled"
    );
    let reasons = firing_reasons(&journal);
    assert_eq!(reasons[0], "fired", "{reasons:?}");
    assert_never_two_runs_at_once(&journal);
    let kinds: Vec<String> = events(&journal).into_iter().map(|(k, _)| k).collect();
    let cut = events(&journal)
        .into_iter()
        .find(|(kind, _)| kind == "schedule.run_finished")
        .expect("the cut run is journaled");
    assert_eq!(cut.1["outcome"], "stopped");
    assert_eq!(kinds.last().map(String::as_str), Some("daemon.stopped"));
    let stopped = events(&journal).pop().unwrap().1;
    assert_eq!(
        stopped["runs_cut"],
        serde_json::json!(["weekly"]),
        "{stopped}"
    );
    assert_eq!(stopped["final_sync"], "done", "{stopped}");
    // JSON logs: one object per line, with the collection run's span fields.
    let logged = lines.lock().unwrap().clone();
    for line in &logged {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    assert!(
        logged
            .iter()
            .any(|l| l.contains("\"collection_run\"") && l.contains("\"schedule\":\"weekly\"")),
        "{logged:?}"
    );

    // The next start catches up the firings it missed (one run) and
    // resumes the live executions instead of submitting them again.
    let (daemon, lines) = start(&app, &[]);
    let pg = connect(&app.database_url).await;
    eventually("three completed weeks in Postgres", Duration::from_secs(60), || async {
        pg.query_one(
            "SELECT count(*) FROM report_data_weeks WHERE status = 'completed' AND execution_id IS NOT NULL",
            &[],
        )
        .await
        .map(|row| row.get::<_, i64>(0) == 3)
        .unwrap_or(false)
    })
    .await;
    // /metrics counts them from the running totals, each with its AMC id.
    let (code, metrics) = get(port, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("chronicle_weeks{status=\"completed\"} 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("chronicle_execution_id_population_ratio 1\n"),
        "{metrics}"
    );
    stop(daemon, &lines).await;
    assert_eq!(app.ledger().len(), 3, "nothing was submitted twice");
    assert_never_two_runs_at_once(&journal);
    let all = events(&journal);
    let restart = all
        .iter()
        .rposition(|(kind, _)| kind == "runner.started")
        .unwrap();
    assert_eq!(all[restart].1["open_attempts"], 3);
    let first_decision = all[restart..]
        .iter()
        .find(|(kind, _)| kind == "schedule.firing")
        .unwrap();
    assert_eq!(first_decision.1["reason"], "catchup", "{first_decision:?}");
    assert!(first_decision.1["missed_firings"].as_u64().unwrap() >= 1);
    let triggers = count(
        &journal,
        "SELECT count(*) FROM attempts WHERE triggered_by NOT IN ('schedule')",
    );
    assert_eq!(triggers, 0, "the resumed attempts keep their first trigger");

    // The scheduler's own events sit in the same chain; the audit of the
    // whole journal against the log and Postgres is clean.
    let audit = app.chronicle(&["audit"]).await;
    assert_eq!(
        audit.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_schedule_is_skipped_and_journaled_and_a_bad_reload_keeps_the_running_set() {
    let app = spawn_app(quick_sim(), &every_second(2)).await;
    with_daemon_settings(&app, free_port());
    let journal = app.journal_path();

    let listed = app.chronicle(&["schedules"]).await;
    assert!(listed.status.success(), "{}", text(&listed));
    let out = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(out.matches("  next  ").count(), 3, "{out}");
    assert!(
        out.contains("UTC") && out.contains("last firing  never"),
        "{out}"
    );

    let paused = app.chronicle(&["pause", "weekly"]).await;
    assert!(paused.status.success(), "{}", text(&paused));
    let unknown = app.chronicle(&["pause", "nosuch"]).await;
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(text(&unknown).contains("nosuch"), "{}", text(&unknown));

    let (daemon, lines) = start(&app, &[]);
    eventually(
        "two skipped-paused firings",
        Duration::from_secs(30),
        || async {
            firing_reasons(&journal)
                .iter()
                .filter(|r| *r == "skipped-paused")
                .count()
                >= 2
        },
    )
    .await;

    std::fs::write(
        app.dir.path().join("schedules/bad.toml"),
        every_second(1).replace("week_start = \"monday\"", "week_start = \"friday\""),
    )
    .unwrap();
    let pid = daemon.id().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGHUP) };
    eventually("a refused reload", Duration::from_secs(30), || async {
        events(&journal).iter().any(|(kind, payload)| {
            kind == "schedules.reloaded"
                && payload["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("bad.toml") && e.contains("week_start"))
        })
    })
    .await;
    // One alert for the pause's skips, not one per skipped firing.
    let paused_alerts = count(
        &journal,
        "SELECT count(*) FROM alerts WHERE kind = 'firing_skipped'
         AND details LIKE '%skipped-paused%'",
    );
    assert_eq!(paused_alerts, 1);
    let skipped_before = firing_reasons(&journal).len();
    eventually(
        "firings go on with the old set",
        Duration::from_secs(30),
        || async { firing_reasons(&journal).len() > skipped_before },
    )
    .await;

    // Every command validates the whole folder, naming the bad file.
    let refused = app.chronicle(&["resume", "weekly"]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("bad.toml"), "{}", text(&refused));
    std::fs::remove_file(app.dir.path().join("schedules/bad.toml")).unwrap();
    let resumed = app.chronicle(&["resume", "weekly"]).await;
    assert!(resumed.status.success(), "{}", text(&resumed));
    eventually("a run after resume", Duration::from_secs(30), || async {
        firing_reasons(&journal).iter().any(|r| r == "fired")
    })
    .await;
    stop(daemon, &lines).await;
    assert!(
        firing_reasons(&journal)
            .iter()
            .all(|r| ["skipped-paused", "fired", "skipped-overlap"].contains(&r.as_str())),
        "{:?}",
        firing_reasons(&journal)
    );
    let kinds: Vec<String> = events(&journal).into_iter().map(|(k, _)| k).collect();
    assert!(kinds.contains(&"schedule.armed".to_owned()));
    assert!(kinds.contains(&"schedule.paused".to_owned()));
    assert!(kinds.contains(&"schedule.resumed".to_owned()));
    let journal_handle = chronicle::journal::Journal::open(&journal).unwrap();
    assert_eq!(
        journal_handle.verify_chain().unwrap(),
        None,
        "decisions are hash-chained"
    );

    let listed = app.chronicle(&["schedules"]).await;
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(out.contains("last firing  "), "{out}");
    assert!(!out.contains("last firing  never"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stop_signal_exits_at_once_with_code_130_and_leaves_the_journal_whole() {
    let mut sim = quick_sim();
    sim.execution_duration = Duration::from_secs(600);
    let app = spawn_app(sim, &every_second(1)).await;
    // A grace period far longer than the test: only the second signal can
    // end the daemon in time.
    with_grace(&app, free_port(), "10min");
    let journal = app.journal_path();
    let (mut daemon, lines) = start(&app, &[]);
    eventually("a submitted execution", Duration::from_secs(30), || async {
        count(
            &journal,
            "SELECT count(*) FROM attempts WHERE state = 'submitted'",
        ) == 1
    })
    .await;
    let pid = daemon.id().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    eventually("the daemon stopping", Duration::from_secs(30), || async {
        lines.lock().unwrap().iter().any(|l| l.contains("stopping"))
    })
    .await;
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("the second signal ends the daemon at once")
        .unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(
        count(
            &journal,
            "SELECT count(*) FROM attempts WHERE state = 'submitted'"
        ),
        1,
        "the live execution stays for the next start"
    );
    let handle = chronicle::journal::Journal::open(&journal).unwrap();
    assert_eq!(handle.verify_chain().unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_watch_interval_a_new_schedule_file_is_picked_up_without_a_signal() {
    let app = spawn_app(quick_sim(), &every_second(1)).await;
    with_grace(&app, free_port(), "1s");
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    app.set_config(&config.replace("[scheduler]\n", "[scheduler]\nwatch_interval = \"100ms\"\n"));
    let journal = app.journal_path();
    assert!(app.chronicle(&["pause", "weekly"]).await.status.success());
    let (daemon, lines) = start(&app, &[]);
    eventually("the daemon firing", Duration::from_secs(30), || async {
        !firing_reasons(&journal).is_empty()
    })
    .await;
    let second = every_second(1).replace("cron = ", "name = \"second\"\ncron = ");
    std::fs::write(app.dir.path().join("schedules/second.toml"), second).unwrap();
    eventually(
        "a reload naming the new schedule",
        Duration::from_secs(30),
        || async {
            events(&journal).iter().any(|(kind, payload)| {
                kind == "schedules.reloaded"
                    && payload["schedules"] == serde_json::json!(["second", "weekly"])
            })
        },
    )
    .await;
    eventually(
        "the new schedule firing",
        Duration::from_secs(30),
        || async {
            events(&journal)
                .iter()
                .any(|(kind, payload)| kind == "schedule.firing" && payload["schedule"] == "second")
        },
    )
    .await;
    stop(daemon, &lines).await;
    assert!(
        events(&journal)
            .iter()
            .all(|(kind, payload)| kind != "schedule.firing"
                || payload["schedule"] != "weekly"
                || payload["reason"] == "skipped-paused"),
        "the reload kept the pause of `weekly`"
    );
}
