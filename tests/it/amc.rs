//! `chronicle backfill` and `chronicle cancel` against a simulator that
//! misbehaves the way AMC does: every week ends completed or failed with a
//! message, nothing is lost, and the simulator saw no request that broke the
//! API's rules. Journal only (no Postgres): these tests are about AMC.

use chronicle::throwaway::ConfigFile;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chronicle::amc::Api;
use chronicle::amc::simulator::{self, Faults, RunningSimulator, SimConfig, Simulator};
use sha2::{Digest, Sha256};

use crate::helpers::{command, run_chronicle, schedule, text};

struct App {
    dir: tempfile::TempDir,
    sim: RunningSimulator,
    config_path: PathBuf,
}

/// A folder with `schedules/weekly.toml`, a config pointing at a fresh
/// simulator, no Postgres; `amc_extra` adds `[amc]` keys.
async fn app(sim: SimConfig, schedule_body: &str, amc_extra: &str) -> App {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("schedules")).unwrap();
    std::fs::write(dir.path().join("schedules/weekly.toml"), schedule_body).unwrap();
    let sim = simulator::spawn(Simulator::new(sim)).await.unwrap();
    let config_path = ConfigFile::for_simulator(&sim)
        .amc("retry_min_delay = \"10ms\"\nretry_max_delay = \"100ms\"")
        .amc(amc_extra)
        .write(dir.path())
        .unwrap();
    App {
        dir,
        sim,
        config_path,
    }
}

impl App {
    async fn chronicle(&self, args: &[&str]) -> std::process::Output {
        run_chronicle(&self.config_path, args).await
    }

    fn journal(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("journal.db")).unwrap()
    }

    /// (week start, status, error message) of every week.
    fn weeks(&self) -> Vec<(String, String, Option<String>)> {
        let journal = self.journal();
        let mut statement = journal
            .prepare("SELECT week_start, status, error_message FROM weeks ORDER BY week_start")
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// (state, amc status, error) of every attempt, oldest first.
    fn attempts(&self) -> Vec<(String, Option<String>, Option<String>)> {
        let journal = self.journal();
        let mut statement = journal
            .prepare("SELECT state, amc_status, error_message FROM attempts ORDER BY created_at")
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

fn quick() -> SimConfig {
    SimConfig {
        execution_duration: Duration::from_millis(100),
        seed: 3,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_mix_backfill_ends_every_week_completed_or_failed_with_a_message() {
    let sim = SimConfig {
        failure_rate: 0.1,
        token_lifetime: Duration::from_secs(4),
        list_page_size: 2,
        faults: Faults {
            throttle_rate: 0.1,
            retry_after_secs: 1,
            server_error_rate: 0.05,
            ..Faults::default()
        },
        ..quick()
    };
    let app = app(sim, &schedule(8, 2), "").await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}",
        text(&output)
    );
    let weeks = app.weeks();
    assert_eq!(weeks.len(), 8);
    for (week, status, error) in &weeks {
        match status.as_str() {
            "completed" => {}
            "failed" => assert!(
                error.as_deref().is_some_and(|e| !e.is_empty()),
                "week {week} failed without a message"
            ),
            other => panic!("week {week} ended {other}: {}", text(&output)),
        }
    }
    let simulator = &app.sim.simulator;
    assert_eq!(simulator.violations(), Vec::<String>::new());
    let requests = simulator.requests();
    assert!(requests.iter().any(|r| r.status == 429), "no 429 was drawn");
    assert!(
        requests.iter().all(|r| r.status != 401),
        "a token was used past its lifetime instead of being refreshed ahead"
    );
    // At most one SUCCEEDED execution per week (I2).
    let mut succeeded: HashMap<String, usize> = HashMap::new();
    for entry in app.sim.simulator.ledger() {
        let now = simulator
            .get("amctest01", &entry.execution.workflow_execution_id)
            .await
            .unwrap();
        if now.status == chronicle::amc::Status::Succeeded {
            *succeeded
                .entry(entry.request.time_window_start)
                .or_default() += 1;
        }
    }
    assert!(succeeded.values().all(|n| *n == 1), "{succeeded:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_rejected_executions_end_with_amcs_reason() {
    let app = app(
        SimConfig {
            rejected_rate: 0.5,
            failure_rate: 1.0,
            seed: 9,
            ..quick()
        },
        &schedule(6, 0),
        "",
    )
    .await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let attempts = app.attempts();
    let reasons: Vec<(&str, &str)> = attempts
        .iter()
        .map(|(_, status, error)| (status.as_deref().unwrap(), error.as_deref().unwrap()))
        .collect();
    assert!(reasons.iter().any(|(s, _)| *s == "REJECTED"), "{reasons:?}");
    assert!(reasons.iter().any(|(s, _)| *s == "FAILED"), "{reasons:?}");
    for (status, error) in reasons {
        let expected = match status {
            "REJECTED" => "the query failed validation",
            _ => "query ran out of memory",
        };
        assert!(error.contains(expected), "{status}: {error}");
    }
    assert!(app.weeks().iter().all(|w| w.1 == "failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_status_word_is_treated_as_running_and_logged_once() {
    let app = app(
        SimConfig {
            execution_duration: Duration::from_millis(400),
            faults: Faults {
                novel_status: true,
                wrapped_bodies: true,
                ..Faults::default()
            },
            ..quick()
        },
        &schedule(3, 0),
        "",
    )
    .await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("status this version does not know").count(),
        1,
        "{stderr}"
    );
    let journal = app.journal();
    let seen: i64 = journal
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'attempt.status' AND payload LIKE '%UNKNOWN%'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(seen >= 1, "the unknown word was journaled as a status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_answers_leave_intents_open_and_a_later_run_adopts_them() {
    let app = app(
        SimConfig {
            faults: Faults {
                malformed_rate: 1.0,
                ..Faults::default()
            },
            ..quick()
        },
        &schedule(3, 0),
        "retry_attempts = 2",
    )
    .await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("malformed answer from AMC"),
        "{}",
        text(&output)
    );
    // AMC created every week; the journal kept every intent to settle it.
    assert_eq!(app.sim.simulator.ledger().len(), 3);
    let states: Vec<String> = app.attempts().into_iter().map(|a| a.0).collect();
    assert_eq!(states, ["intent", "intent", "intent"]);

    app.sim.simulator.set_faults(Faults::default());
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(app.sim.simulator.ledger().len(), 3, "nothing created twice");
    let journal = app.journal();
    let adopted: i64 = journal
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'attempt.adopted'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(adopted, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_gzip_slow_results_are_joined_streamed_and_kept_as_csv() {
    let app = app(
        SimConfig {
            gzip_results: true,
            result_parts: 3,
            rows_per_result: 3000..=4000,
            faults: Faults {
                slow_download: Duration::from_millis(2),
                results_delay: Duration::from_millis(200),
                ..Faults::default()
            },
            ..quick()
        },
        &schedule(2, 0),
        "results_dir = \"results\"",
    )
    .await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let journal = app.journal();
    let mut statement = journal
        .prepare("SELECT amc_execution_id, row_count, data_checksum FROM attempts")
        .unwrap();
    let rows: Vec<(String, i64, String)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2);
    for (id, count, checksum) in rows {
        let kept = std::fs::read(app.dir.path().join("results").join(format!("{id}.csv"))).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&kept)), checksum);
        let kept = String::from_utf8(kept).unwrap();
        let header = kept.lines().next().unwrap();
        assert_eq!(kept.matches(header).count(), 1, "one header line");
        assert_eq!(kept.lines().count() as i64 - 1, count);
        assert!((3000..=4000).contains(&count));
    }
    let leftovers: Vec<_> = std::fs::read_dir(app.dir.path().join("results"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let pending = app
        .sim
        .simulator
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/downloadUrls") && r.status == 400)
        .count();
    assert!(pending > 0, "results were asked for before they were ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_size_limit_fails_its_week_without_a_new_attempt() {
    let app = app(quick(), &schedule(1, 3), "max_result_bytes = 100").await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let weeks = app.weeks();
    assert_eq!(weeks[0].1, "failed");
    assert!(
        weeks[0]
            .2
            .as_deref()
            .unwrap()
            .contains("amc.max_result_bytes"),
        "{weeks:?}"
    );
    assert_eq!(app.sim.simulator.ledger().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_chronicle_did_not_start_count_against_the_limit_when_asked() {
    let sim = || SimConfig {
        execution_duration: Duration::from_millis(1500),
        concurrency_limit: 2,
        ..quick()
    };
    let foreign = |sim: &Simulator| {
        let sim = sim.clone();
        async move {
            let request = chronicle::amc::CreateExecution {
                workflow_id: "someone_elses_query".into(),
                time_window_type: "EXPLICIT".into(),
                time_window_start: "2024-01-01T00:00:00".into(),
                time_window_end: "2024-01-08T00:00:00".into(),
                time_window_time_zone: "UTC".into(),
                parameter_values: Default::default(),
            };
            let execution = sim.create("amctest01", &request).await.unwrap();
            // Live for the whole backfill, however slowly it starts.
            sim.hold(&execution.workflow_execution_id);
        }
    };
    let counting = app(
        sim(),
        &schedule(3, 0),
        "max_concurrent_executions = 2\ncount_foreign_executions = true",
    )
    .await;
    foreign(&counting.sim.simulator).await;
    let output = counting.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(counting.sim.simulator.violations(), Vec::<String>::new());

    // The same without counting them goes over AMC's limit.
    let blind = app(sim(), &schedule(3, 0), "max_concurrent_executions = 2").await;
    foreign(&blind.sim.simulator).await;
    let output = blind.chronicle(&["backfill", "weekly"]).await;
    let violations = blind.sim.simulator.violations();
    assert!(!violations.is_empty(), "{}", text(&output));
    assert!(violations[0].contains("(limit 2)"), "{violations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_token_stops_the_backfill_with_a_clear_error() {
    let mut sim = quick();
    sim.client_secret = "the-real-secret".into();
    let app = app(sim, &schedule(6, 3), "").await;
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        config.replace("the-real-secret", "an-old-secret"),
    )
    .unwrap();
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot authenticate with AMC"), "{stderr}");
    assert!(stderr.contains("invalid_grant"), "{stderr}");
    let requests = app.sim.simulator.requests();
    assert_eq!(
        requests.len(),
        1,
        "one refused login, nothing else: {requests:?}"
    );
    assert!(app.sim.simulator.ledger().is_empty());
}

/// Starts a backfill of long executions, waits until AMC holds `weeks` of
/// them, and kills it: the journal is left with live submitted attempts.
async fn leave_live_attempts(app: &App, weeks: usize) {
    let mut child = command(&app.config_path, &["backfill", "weekly"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let journal_path = app.dir.path().join("journal.db");
    crate::helpers::eventually("live attempts", Duration::from_secs(20), || {
        let path = journal_path.clone();
        async move { submitted(&path) == weeks }
    })
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

fn submitted(path: &Path) -> usize {
    let Ok(journal) = rusqlite::Connection::open(path) else {
        return 0;
    };
    journal
        .query_row(
            "SELECT count(*) FROM attempts WHERE state = 'submitted'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .map_or(0, |n| n as usize)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_execution_in_amc_and_puts_the_week_back_unless_told_to_fail_it() {
    let app = app(
        SimConfig {
            execution_duration: Duration::from_secs(600),
            ..quick()
        },
        &schedule(2, 0),
        "",
    )
    .await;
    leave_live_attempts(&app, 2).await;
    let weeks = app.weeks();
    let (first, second) = (weeks[0].0.clone(), weeks[1].0.clone());

    let output = app.chronicle(&["cancel", &first]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("now pending"));

    let journal = app.journal();
    let second_execution: String = journal
        .query_row(
            "SELECT a.amc_execution_id FROM attempts a JOIN weeks w ON w.id = a.week_id
             WHERE w.week_start = ?1",
            [&second],
            |row| row.get(0),
        )
        .unwrap();
    let output = app
        .chronicle(&["cancel", "--fail", &second_execution])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    let weeks = app.weeks();
    assert_eq!(
        (weeks[0].1.as_str(), weeks[1].1.as_str()),
        ("pending", "failed")
    );
    assert!(weeks[1].2.as_deref().unwrap().contains("cancelled"));
    let attempts = app.attempts();
    assert!(
        attempts
            .iter()
            .all(|a| a.0 == "failed" && a.1.as_deref() == Some("CANCELLED")),
        "{attempts:?}"
    );
    let cancelled: i64 = journal
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'attempt.cancelled'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(cancelled, 2);
    for entry in app.sim.simulator.ledger() {
        let now = app
            .sim
            .simulator
            .get("amctest01", &entry.execution.workflow_execution_id)
            .await
            .unwrap();
        assert_eq!(now.status, chronicle::amc::Status::Cancelled);
    }
    let puts: Vec<_> = app
        .sim
        .simulator
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 2);
    assert!(
        puts.iter()
            .all(|r| r.body.as_deref() == Some(r#"{"status":"CANCELLED"}"#))
    );

    let output = app.chronicle(&["cancel", &first]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no open attempt matches"));

    // The event log explains both cancels: replaying it gives the state tables.
    let output = app.chronicle(&["audit"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_prints_weeks_and_request_bodies_and_sends_nothing() {
    let app = app(quick(), &schedule(3, 0), "").await;
    let output = app.chronicle(&["backfill", "weekly", "--dry-run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("3 weeks would be submitted"), "{stdout}");
    assert_eq!(
        stdout.matches("\"timeWindowType\": \"EXPLICIT\"").count(),
        3
    );
    assert!(stdout.contains("\"region\": \"eu\""), "{stdout}");
    assert!(app.sim.simulator.requests().is_empty());
    assert!(!app.dir.path().join("journal.db").exists());

    // After a real run, a dry run has nothing left to send.
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let sent = app.sim.simulator.requests().len();
    let output = app.chronicle(&["backfill", "weekly", "--dry-run"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("0 weeks would be submitted"), "{stdout}");
    assert_eq!(app.sim.simulator.requests().len(), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_at_trace_level() {
    let sim = SimConfig {
        client_secret: "CS-very-secret-4711".into(),
        refresh_token: "Atzr|RT-very-secret-0815".into(),
        token_lifetime: Duration::from_secs(2),
        failure_rate: 0.3,
        faults: Faults {
            server_error_rate: 0.1,
            malformed_rate: 0.05,
            ..Faults::default()
        },
        ..quick()
    };
    let app = app(sim, &schedule(4, 1), "").await;
    let mut logs = String::new();
    for args in [
        &["backfill", "weekly"][..],
        &["backfill", "weekly", "--dry-run"],
    ] {
        let output = command(&app.config_path, args)
            .env("RUST_LOG", "trace")
            .output()
            .await
            .unwrap();
        logs.push_str(&text(&output));
    }
    // And once with credentials Login with Amazon refuses.
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        config.replace("CS-very-secret-4711", "CS-wrong-secret-1234"),
    )
    .unwrap();
    let output = command(&app.config_path, &["backfill", "weekly"])
        .env("RUST_LOG", "trace")
        .output()
        .await
        .unwrap();
    logs.push_str(&text(&output));
    assert!(logs.contains("TRACE"), "trace logging was on");

    let tokens = app.sim.simulator.issued_tokens();
    assert!(!tokens.is_empty());
    let mut secrets = vec![
        "CS-very-secret-4711".to_owned(),
        "CS-wrong-secret-1234".to_owned(),
        "RT-very-secret-0815".to_owned(),
        "Bearer ".to_owned(),
    ];
    secrets.extend(tokens);
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "`{secret}` appeared in the logs"
        );
    }

    let settings =
        chronicle::settings::Settings::load(&app.config_path, true).expect("the config loads");
    let debug = format!("{settings:?}");
    for secret in &secrets[..3] {
        assert!(
            !debug.contains(secret.as_str()),
            "`{secret}` in Debug output"
        );
    }
}

/// Runs `chronicle backfill weekly` and returns its peak resident memory in
/// KiB: the kernel's high-water mark of its own address space (`VmHWM`),
/// read until it exits. wait4's `ru_maxrss` cannot serve: it also counts the
/// memory of this test process at the moment it spawned the child, and here
/// the simulator holding a large result lives in this process.
async fn peak_memory_of_backfill(app: &App) -> i64 {
    let mut child = command(&app.config_path, &["backfill", "weekly"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id().unwrap());
    let mut peak = 0;
    loop {
        // The mark only rises, so the last reading before exit is the peak
        // of everything but the exit itself.
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && let Some(kib) = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<i64>()
                        .ok()
                })
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            return peak;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_is_streamed_so_memory_does_not_grow_with_its_size() {
    let mut peaks = Vec::new();
    // The row sample for the dashboards is bounded by
    // `postgres.result_rows_limit`; everything else is one pass.
    for (rows, limit) in [(5_000u32, 10_000), (400_000, 10_000), (400_000, 0)] {
        let sim = SimConfig {
            rows_per_result: rows..=rows,
            gzip_results: true,
            result_parts: 2,
            ..quick()
        };
        let limit = format!("[postgres]\nresult_rows_limit = {limit}");
        let app = app(sim, &schedule(1, 0), &limit).await;
        peaks.push(peak_memory_of_backfill(&app).await);
        let count: i64 = app
            .journal()
            .query_row("SELECT row_count FROM attempts", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, i64::from(rows));
    }
    // 400,000 rows are about 16 MB of CSV; none of it may be held at once,
    // and the 10,000 sample rows (5,000 of them in the small result) a few MB.
    let growth = peaks[1] - peaks[0];
    assert!(growth < 8 * 1024, "peaks {peaks:?} KiB: grew {growth} KiB");
    let sample = peaks[1] - peaks[2];
    assert!(
        sample < 8 * 1024,
        "peaks {peaks:?} KiB: the sample took {sample} KiB"
    );
}
