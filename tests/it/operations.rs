//! Operating a running daemon from another process (issue 17): a range
//! backfill, a re-run and a cancel are journaled as requests, carried out
//! by the real `chronicle run`, and their outcomes printed by the command
//! that asked; bad requests are refused with exit 2; the audit of the
//! journal, with Postgres, stays clean.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use chronicle::schedule::week;
use chrono::{NaiveDate, Utc, Weekday};

use crate::daemon::{free_port, get, start};
use crate::helpers::{TestApp, connect, eventually, quick_sim, schedule, spawn_app, text};

/// The `n`-th most recent due week of the test schedule (0 = latest).
pub(crate) fn due_week(n: i64) -> NaiveDate {
    let latest = week::latest_due(Utc::now().date_naive(), Weekday::Mon, 14);
    latest - chrono::Duration::weeks(n)
}

pub(crate) fn query<T: rusqlite::types::FromSql>(journal: &Path, sql: &str) -> T {
    rusqlite::Connection::open(journal)
        .unwrap()
        .query_row(sql, [], |row| row.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn creates_for(app: &TestApp, week: NaiveDate) -> usize {
    let start = format!("{week}T00:00:00");
    app.ledger()
        .iter()
        .filter(|entry| entry.request.time_window_start == start)
        .count()
}

async fn sigterm(mut daemon: tokio::process::Child) {
    unsafe { libc::kill(daemon.id().expect("running") as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("the daemon stops within 30 s")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_backfill_a_rerun_and_a_cancel_from_another_process_are_carried_out_by_the_running_daemon()
 {
    let mut sim = quick_sim();
    sim.execution_duration = Duration::from_secs(1);
    // A weekly cron that does not fire during the test: every run is one
    // a person asked for.
    let app = spawn_app(sim, &schedule(4, 0)).await;
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    let port = free_port();
    app.set_config(&format!(
        "{config}\n[scheduler]\nshutdown_timeout = \"2s\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    let journal = app.journal_path();
    let (daemon, lines) = start(&app, &[]);
    let lock = app.dir.path().join("journal.db.lock");
    eventually(
        "the daemon holds the journal",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(&lock).is_ok_and(|held| held.contains("(chronicle run,"))
        },
    )
    .await;

    // Exactly the range: the two oldest of the four weeks, the collection
    // starting at the first.
    let (w1, w2, w3, w4) = (due_week(3), due_week(2), due_week(1), due_week(0));
    let range = app
        .chronicle(&[
            "backfill",
            "weekly",
            "--from",
            &w1.to_string(),
            "--to",
            &(w2 + chrono::Duration::days(3)).to_string(),
        ])
        .await;
    assert_eq!(range.status.code(), Some(0), "{}", text(&range));
    assert!(
        stdout(&range).contains("2 weeks completed, 0 failed"),
        "{}",
        text(&range)
    );
    assert!(
        String::from_utf8_lossy(&range.stderr).contains("journaled for the running daemon"),
        "{}",
        text(&range)
    );
    assert_eq!((creates_for(&app, w1), creates_for(&app, w2)), (1, 1));
    assert_eq!((creates_for(&app, w3), creates_for(&app, w4)), (0, 0));
    let start: String = query(&journal, "SELECT start_date FROM collections");
    assert_eq!(start, w1.to_string());

    // Bad requests are refused (exit 2) naming what is wrong.
    let reversed = app
        .chronicle(&[
            "backfill",
            "weekly",
            "--from",
            &w2.to_string(),
            "--to",
            &w1.to_string(),
        ])
        .await;
    assert_eq!(reversed.status.code(), Some(2), "{}", text(&reversed));
    assert!(text(&reversed).contains("--from"), "{}", text(&reversed));
    let pending = app
        .chronicle(&["rerun", "weekly", &w3.to_string(), "--reason", "early"])
        .await;
    assert_eq!(pending.status.code(), Some(2), "{}", text(&pending));
    assert!(text(&pending).contains("pending"), "{}", text(&pending));
    let missing = app
        .chronicle(&["rerun", "weekly", "2001-01-01", "--reason", "typo"])
        .await;
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(
        text(&missing).contains("no week starting"),
        "{}",
        text(&missing)
    );

    // A re-run of a completed week: a new attempt triggered by `rerun`,
    // the earlier kept and superseded, who and why in the journal.
    let before: String = query(
        &journal,
        &format!("SELECT w.attempt_id FROM weeks w WHERE w.week_start = '{w1}'"),
    );
    let rerun = app
        .chronicle(&[
            "rerun",
            "weekly",
            &(w1 + chrono::Duration::days(2)).to_string(),
            "--reason",
            "numbers looked off",
        ])
        .await;
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun));
    assert!(
        stdout(&rerun).contains("re-run: completed"),
        "{}",
        text(&rerun)
    );
    assert_eq!(creates_for(&app, w1), 2);
    let (after, trigger): (String, String) = {
        let connection = rusqlite::Connection::open(&journal).unwrap();
        connection
            .query_row(
                &format!(
                    "SELECT a.id, a.triggered_by FROM weeks w JOIN attempts a ON a.id = w.attempt_id
                     WHERE w.week_start = '{w1}' AND w.status = 'completed'"
                ),
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap()
    };
    assert_ne!(after, before);
    assert_eq!(trigger, "rerun");
    let superseded: i64 = query(
        &journal,
        &format!(
            "SELECT count(*) FROM attempts WHERE id = '{before}' AND state = 'succeeded' AND superseded_at IS NOT NULL"
        ),
    );
    assert_eq!(superseded, 1);
    let asked: String = query(
        &journal,
        "SELECT payload FROM events WHERE kind = 'week.rerun_requested'",
    );
    assert!(
        asked.contains("numbers looked off") && asked.contains("\"request\""),
        "{asked}"
    );

    // Postgres points the week at the new execution; the superseded one
    // keeps its row, completed.
    let pg = connect(&app.database_url).await;
    eventually(
        "the re-run in Postgres",
        Duration::from_secs(30),
        || async {
            pg.query_one(
                "SELECT execution_id::text FROM report_data_weeks WHERE week_start_date = $1",
                &[&w1],
            )
            .await
            .is_ok_and(|row| row.get::<_, Option<String>>(0).as_deref() == Some(after.as_str()))
        },
    )
    .await;
    let old = pg
        .query_one(
            "SELECT status FROM workflow_executions WHERE id::text = $1",
            &[&before],
        )
        .await
        .unwrap();
    assert_eq!(old.get::<_, String>(0), "completed");

    // A backfill left to run (--no-wait prints the request id), and a
    // cancel of one of its live executions while it runs.
    let queued = app.chronicle(&["backfill", "weekly", "--no-wait"]).await;
    assert_eq!(queued.status.code(), Some(0), "{}", text(&queued));
    let request: i64 = stdout(&queued).trim().parse().expect("a request id");
    eventually("w3 submitted", Duration::from_secs(30), || async {
        app.ledger()
            .iter()
            .any(|e| e.request.time_window_start == format!("{w3}T00:00:00"))
    })
    .await;
    let live = app
        .ledger()
        .into_iter()
        .find(|e| e.request.time_window_start == format!("{w3}T00:00:00"))
        .unwrap();
    app.sim
        .simulator
        .hold(&live.execution.workflow_execution_id);
    eventually(
        "w3's execution id journaled",
        Duration::from_secs(30),
        || async {
            query::<i64>(
                &journal,
                &format!(
                    "SELECT count(*) FROM attempts WHERE amc_execution_id = '{}'",
                    live.execution.workflow_execution_id
                ),
            ) == 1
        },
    )
    .await;
    // A running week is not re-run: it is refused, naming what to do.
    let running = app
        .chronicle(&["rerun", "weekly", &w3.to_string(), "--reason", "too soon"])
        .await;
    assert_eq!(running.status.code(), Some(2), "{}", text(&running));
    assert!(
        text(&running).contains("is running") && text(&running).contains("chronicle cancel"),
        "{}",
        text(&running)
    );
    let cancel = app.chronicle(&["cancel", &w3.to_string()]).await;
    assert_eq!(cancel.status.code(), Some(0), "{}", text(&cancel));
    assert!(
        stdout(&cancel).contains(&format!(
            "cancelled AMC execution {}",
            live.execution.workflow_execution_id
        )) && stdout(&cancel).contains("the week is now pending"),
        "{}",
        text(&cancel)
    );
    let listed = app.chronicle(&["requests", "--json"]).await;
    assert!(listed.status.success(), "{}", text(&listed));
    eventually(
        "the backfill request finished",
        Duration::from_secs(30),
        || async {
            let listed = app.chronicle(&["requests", "--json"]).await;
            let requests: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
            requests
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == request && r["state"] == "finished")
        },
    )
    .await;
    let listed = app.chronicle(&["requests", "--json"]).await;
    let requests: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let outcomes: Vec<(String, String)> = requests
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| {
            (
                r["operation"]["kind"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("backfill", "completed"),
        ("backfill", "refused"),
        ("rerun", "refused"),
        ("rerun", "refused"),
        ("rerun", "completed"),
        ("rerun", "refused"),
        ("backfill", "failed"),
        ("cancel", "completed"),
    ]
    .iter()
    .map(|(k, o)| ((*k).to_owned(), (*o).to_owned()))
    .collect();
    // The backfill ends after the cancel: the last two finish in that
    // order or the other.
    let mut sorted = outcomes.clone();
    let mut wanted = expected.clone();
    sorted.sort();
    wanted.sort();
    assert_eq!(sorted, wanted, "{outcomes:?}");
    // The cancelled week was not submitted again by the running backfill.
    assert_eq!(creates_for(&app, w3), 1);
    let w3_status: String = query(
        &journal,
        &format!("SELECT status FROM weeks WHERE week_start = '{w3}'"),
    );
    assert_eq!(w3_status, "pending");
    assert_eq!(creates_for(&app, w4), 1);

    // The figures people alert on, over HTTP.
    let (code, metrics) = get(port, "/metrics").await;
    assert_eq!(code, 200);
    for line in [
        "chronicle_schedule_weeks{schedule=\"weekly\",status=\"completed\"} 3\n",
        "chronicle_schedule_weeks{schedule=\"weekly\",status=\"pending\"} 1\n",
        "chronicle_quarantined_rows 0\n",
        "chronicle_unresolved_attempts 0\n",
        "chronicle_skipped_firings_total{schedule=\"weekly\"} 0\n",
        "chronicle_executions{state=\"succeeded\"} 4\n",
        "# TYPE chronicle_amc_request_duration_seconds histogram\n",
        "# TYPE chronicle_postgres_request_duration_seconds histogram\n",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    let figure = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in:\n{metrics}"))
    };
    assert!(figure("chronicle_amc_request_duration_seconds_count") > 5.0);
    assert!(figure("chronicle_postgres_request_duration_seconds_count") >= 1.0);
    assert!(figure("chronicle_sync_lag_seconds") < 30.0);
    let last_success = figure("chronicle_last_success_timestamp_seconds{schedule=\"weekly\"}");
    assert!((Utc::now().timestamp() as f64 - last_success).abs() < 120.0);

    sigterm(daemon).await;
    drop(lines);
    let audit = app.chronicle(&["audit"]).await;
    assert_eq!(audit.status.code(), Some(0), "{}", text(&audit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_daemon_a_rerun_runs_in_process_and_says_who_asked() {
    let app = spawn_app(quick_sim(), &schedule(2, 0)).await;
    // A range dry run names exactly its weeks and sends nothing.
    let (first, last) = (due_week(3), due_week(2));
    let dry = app
        .chronicle(&[
            "backfill",
            "weekly",
            "--from",
            &first.to_string(),
            "--to",
            &last.to_string(),
            "--dry-run",
        ])
        .await;
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(
        stdout(&dry).contains("2 weeks would be submitted")
            && stdout(&dry).contains(&format!("week {first}:"))
            && stdout(&dry).contains(&format!("week {last}:"))
            && !stdout(&dry).contains(&format!("week {}:", due_week(1))),
        "{}",
        text(&dry)
    );
    assert!(app.ledger().is_empty());
    let backfill = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(backfill.status.code(), Some(0), "{}", text(&backfill));
    let week = due_week(1);
    let rerun = app
        .chronicle(&[
            "rerun",
            "weekly",
            &week.to_string(),
            "--reason",
            "late data",
        ])
        .await;
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun));
    assert!(
        stdout(&rerun).contains("re-run: completed"),
        "{}",
        text(&rerun)
    );
    assert!(
        !String::from_utf8_lossy(&rerun.stderr).contains("request"),
        "{}",
        text(&rerun)
    );
    assert_eq!(creates_for(&app, week), 2);
    let lineage = app.chronicle(&["lineage", &week.to_string()]).await;
    let out = stdout(&lineage);
    assert!(out.contains("week.rerun_requested"), "{out}");
    assert!(out.contains("triggered by rerun"), "{out}");
    assert!(
        out.contains("succeeded, superseded by a re-run at"),
        "{out}"
    );
    let reruns: i64 = query(
        &app.journal_path(),
        "SELECT count(*) FROM events WHERE kind = 'week.rerun_requested' AND json_extract(payload, '$.reason') = 'late data'",
    );
    assert_eq!(reruns, 1);
    let audit = app.chronicle(&["audit"]).await;
    assert_eq!(audit.status.code(), Some(0), "{}", text(&audit));
}
