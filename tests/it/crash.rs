//! Crash safety (I1, I2): the real binary killed with SIGKILL at random
//! moments, lost create answers, an intent cut short, and two runners on one
//! journal. The simulator's ledger is the truth about what AMC holds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chronicle::amc::simulator::SimConfig;
use chronicle::amc::{Api, Status};
use chronicle::journal::Journal;
use chronicle::schedule::Schedule;
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::helpers::{TestApp, command, connect, eventually, quick_sim, schedule, spawn_app, text};

/// `(week id, status, AMC id, rows, checksum)`.
type WeekState = (String, String, Option<String>, Option<i64>, Option<String>);

/// Every week's tracking state, from the journal.
fn journal_weeks(app: &TestApp) -> BTreeSet<WeekState> {
    let raw = rusqlite::Connection::open(app.journal_path()).unwrap();
    let mut statement = raw
        .prepare(
            "SELECT w.id, w.status, a.amc_execution_id, w.record_count, w.data_checksum
             FROM weeks w LEFT JOIN attempts a ON a.id = w.attempt_id",
        )
        .unwrap();
    statement
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

async fn postgres_weeks(app: &TestApp) -> BTreeSet<WeekState> {
    let pg = connect(&app.database_url).await;
    pg.query(
        "SELECT w.id::text, w.status, e.amc_execution_id, w.record_count::int8, w.data_checksum
         FROM report_data_weeks w LEFT JOIN workflow_executions e ON e.id = w.execution_id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
    .collect()
}

fn journaled_amc_ids(app: &TestApp) -> BTreeSet<String> {
    let raw = rusqlite::Connection::open(app.journal_path()).unwrap();
    let mut statement = raw
        .prepare("SELECT amc_execution_id FROM attempts WHERE amc_execution_id IS NOT NULL")
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// What every crash test checks once the last run finished: no orphans,
/// one execution per week, and Postgres equal to the journal.
async fn assert_settled(app: &TestApp, weeks: usize) {
    let ledger = app.ledger();
    let journaled = journaled_amc_ids(app);
    for entry in &ledger {
        assert!(
            journaled.contains(&entry.execution.workflow_execution_id),
            "orphan: AMC holds {} but the journal does not",
            entry.execution.workflow_execution_id
        );
    }
    let mut per_week: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in &ledger {
        *per_week
            .entry(&entry.request.time_window_start)
            .or_default() += 1;
        let now = app
            .sim
            .simulator
            .get(&entry.instance_id, &entry.execution.workflow_execution_id)
            .await
            .unwrap();
        assert_eq!(now.status, Status::Succeeded);
    }
    assert_eq!(per_week.len(), weeks);
    assert!(
        per_week.values().all(|n| *n == 1),
        "a week was paid for twice: {per_week:?}"
    );
    // Each week holds the execution AMC created from its own request.
    let raw = rusqlite::Connection::open(app.journal_path()).unwrap();
    let mut statement = raw
        .prepare(
            "SELECT w.week_start, a.amc_execution_id, a.request FROM weeks w
             JOIN attempts a ON a.id = w.attempt_id",
        )
        .unwrap();
    let held: Vec<(String, Option<String>, String)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (week, id, request) in held {
        let id = id.unwrap_or_else(|| panic!("week {week} has no AMC execution"));
        let entry = ledger
            .iter()
            .find(|e| e.execution.workflow_execution_id == id)
            .unwrap_or_else(|| panic!("week {week} holds {id}, which AMC never created"));
        let request: chronicle::amc::CreateExecution = serde_json::from_str(&request).unwrap();
        assert_eq!(
            entry.request, request,
            "week {week} holds another request's execution"
        );
        assert_eq!(entry.request.time_window_start, format!("{week}T00:00:00"));
    }
    let journal = journal_weeks(app);
    assert_eq!(journal.len(), weeks);
    assert!(journal.iter().all(|w| w.1 == "completed"), "{journal:?}");
    assert_eq!(
        postgres_weeks(app).await,
        journal,
        "Postgres matches the journal"
    );
    let pg = connect(&app.database_url).await;
    let executions: i64 = pg
        .query_one("SELECT count(*) FROM workflow_executions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        executions as usize,
        ledger.len(),
        "every execution reached Postgres"
    );
}

fn limit_concurrency(app: &TestApp, limit: usize) {
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    app.set_config(&config.replace(
        "poll_interval = \"20ms\"",
        &format!("poll_interval = \"20ms\"\nmax_concurrent_executions = {limit}"),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_at_random_moments_ends_with_no_orphans_and_no_week_paid_twice() {
    let sim = SimConfig {
        execution_duration: Duration::from_millis(400),
        seed: 11,
        ..SimConfig::default()
    };
    let app = spawn_app(sim, &schedule(24, 3)).await;
    limit_concurrency(&app, 3);
    let mut rng = StdRng::seed_from_u64(2024);
    let mut killed = 0;
    for _ in 0..12 {
        let mut child = command(&app.config_path, &["backfill", "weekly"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let delay = Duration::from_millis(rng.random_range(20..700));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {
                child.start_kill().unwrap();
                child.wait().await.unwrap();
                killed += 1;
            }
            status = child.wait() => {
                status.unwrap();
            }
        }
    }
    assert!(killed >= 10, "only {killed} runs were killed");
    let raw = rusqlite::Connection::open(app.journal_path()).unwrap();
    let resumed: i64 = raw
        .query_row(
            "SELECT sum(json_extract(payload, '$.open_attempts')) FROM events
             WHERE kind = 'runner.started'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(
        resumed > 0,
        "the kills must have left attempts open to recover"
    );
    let last = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(last.status.code(), Some(0), "{}", text(&last));
    let sync = app.chronicle(&["sync"]).await;
    assert_eq!(sync.status.code(), Some(0), "{}", text(&sync));
    assert_settled(&app, 24).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_create_answers_are_adopted_at_once_without_a_restart() {
    let sim = SimConfig {
        drop_create_rate: 0.5,
        ..quick_sim()
    };
    let app = spawn_app(sim, &schedule(20, 0)).await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        app.ledger().iter().filter(|e| e.answer_dropped).count() >= 5,
        "the fault must fire for this test to mean anything"
    );
    assert_settled(&app, 20).await;
}

/// Plans the app's only week and journals an intent for it, as a process
/// killed right after would have left it.
async fn cut_short_intent(app: &TestApp) -> (uuid::Uuid, chronicle::amc::CreateExecution) {
    let today = Utc::now().date_naive();
    let schedule =
        Schedule::from_file(&app.dir.path().join("schedules/weekly.toml"), today).unwrap();
    let journal = Journal::open(&app.journal_path()).unwrap();
    let plan = journal.plan(&schedule, today).unwrap();
    let request = schedule.request(plan.work[0].week_start);
    let attempt = journal
        .record_intent(plan.work[0].week_id, &request, "backfill")
        .unwrap();
    (attempt.id, request)
}

fn events_of(app: &TestApp, subject: uuid::Uuid) -> Vec<String> {
    let raw = rusqlite::Connection::open(app.journal_path()).unwrap();
    let mut statement = raw
        .prepare("SELECT kind FROM events WHERE subject = ?1 ORDER BY seq")
        .unwrap();
    statement
        .query_map([subject.to_string()], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_cut_short_after_the_post_is_adopted_on_restart_not_submitted_again() {
    let app = spawn_app(quick_sim(), &schedule(1, 0)).await;
    let (attempt, request) = cut_short_intent(&app).await;
    // The POST reached AMC; the process died before journaling the id.
    app.sim
        .simulator
        .create("amctest01", &request)
        .await
        .unwrap();

    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(app.ledger().len(), 1, "no second submission");
    assert_eq!(
        events_of(&app, attempt)[..2],
        ["attempt.intent".to_owned(), "attempt.adopted".to_owned()]
    );
    let status = app.chronicle(&["status", "--json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["last_start"]["recovered"], 1, "{report}");
    assert_eq!(report["last_start"]["adopted"], 1, "{report}");
    assert_eq!(report["journal_mode"], "wal");
    assert_eq!(report["synchronous"], "FULL");
    assert_settled(&app, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_cut_short_before_the_post_is_abandoned_and_submitted_once() {
    let app = spawn_app(quick_sim(), &schedule(1, 0)).await;
    let (attempt, _) = cut_short_intent(&app).await;

    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(app.ledger().len(), 1);
    assert_eq!(
        events_of(&app, attempt),
        ["attempt.intent".to_owned(), "attempt.abandoned".to_owned()]
    );
    assert_settled(&app, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runner_on_the_same_journal_is_refused_while_status_still_works() {
    let app = spawn_app(quick_sim(), &schedule(1, 0)).await;
    let mut daemon = command(&app.config_path, &["run"]).spawn().unwrap();
    let pid = daemon.id().unwrap();
    eventually(
        "the daemon to take the journal",
        Duration::from_secs(30),
        || async {
            let lock = app.dir.path().join("journal.db.lock");
            std::fs::read_to_string(lock).is_ok_and(|text| text.contains(&format!("pid {pid}")))
        },
    )
    .await;

    // A second daemon; a `backfill` would be a request this one carries
    // out (`operations`).
    let second = app.chronicle(&["run"]).await;
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("in use by another chronicle runner"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {pid} (chronicle run")),
        "{stderr}"
    );
    let status = app.chronicle(&["status"]).await;
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));

    // Killed without a chance to clean up: the OS releases the lock.
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
    let third = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(third.status.code(), Some(0), "{}", text(&third));
}
