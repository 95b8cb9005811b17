//! The journal's own guarantees: a tamper-evident event log (I6), a
//! lineage that resolves every kind of id to the same week, and commits
//! shared by concurrent writers that lose nothing they acknowledged (I1).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chronicle::amc::{Execution, Status};
use chronicle::journal::Journal;
use chronicle::schedule::Schedule;
use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::helpers::{quick_sim, schedule, spawn_app, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_event_breaks_the_hash_chain_at_that_event() {
    let app = spawn_app(quick_sim(), &schedule(2, 0)).await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let journal = Journal::open(&app.journal_path()).unwrap();
    assert_eq!(journal.verify_chain().unwrap(), None);

    // Behind chronicle's back, the way someone with sqlite3 would.
    let raw = rusqlite::Connection::open(app.journal_path()).unwrap();
    raw.execute_batch(
        "DROP TRIGGER events_no_update;
         UPDATE events SET payload = replace(payload, 'record_count', 'record_kount')
          WHERE seq = (SELECT min(seq) FROM events WHERE kind = 'attempt.succeeded');",
    )
    .unwrap();
    let edited: i64 = raw
        .query_row(
            "SELECT min(seq) FROM events WHERE kind = 'attempt.succeeded'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let broken = journal
        .verify_chain()
        .unwrap()
        .expect("the edit is detected");
    assert_eq!(broken.seq, edited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_finds_the_same_week_by_date_week_id_attempt_id_and_amc_id() {
    let app = spawn_app(quick_sim(), &schedule(1, 0)).await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    let by_date = app
        .chronicle(&[
            "lineage",
            "--json",
            &app.ledger()[0].request.time_window_start[..10],
        ])
        .await;
    assert_eq!(by_date.status.code(), Some(0), "{}", text(&by_date));
    let lineage: serde_json::Value = serde_json::from_slice(&by_date.stdout).unwrap();
    let week = &lineage["weeks"][0];
    let keys = [
        week["id"].as_str().unwrap().to_owned(),
        week["attempts"][0]["id"].as_str().unwrap().to_owned(),
        week["attempts"][0]["amc_execution_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    assert_eq!(keys[2], app.ledger()[0].execution.workflow_execution_id);
    for key in keys {
        let output = app.chronicle(&["lineage", "--json", &key]).await;
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        let found: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(found, lineage, "lineage by {key}");
    }
    let missing = app.chronicle(&["lineage", "no-such-id"]).await;
    assert_eq!(missing.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_execution_amc_created_was_journaled_before_it_existed() {
    let app = spawn_app(quick_sim(), &schedule(4, 0)).await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    let raw = rusqlite::Connection::open(app.journal_path()).unwrap();
    for entry in app.ledger() {
        let amc_id = &entry.execution.workflow_execution_id;
        let intent_at: String = raw
            .query_row(
                "SELECT e.at FROM events e JOIN attempts a ON a.id = e.subject
                 WHERE e.kind = 'attempt.intent' AND a.amc_execution_id = ?1",
                [amc_id],
                |row| row.get(0),
            )
            .unwrap_or_else(|e| panic!("{amc_id} has no journaled intent: {e}"));
        let intent_at = chrono::DateTime::parse_from_rfc3339(&intent_at).unwrap();
        let created_at =
            chrono::DateTime::parse_from_rfc3339(entry.execution.create_time.as_deref().unwrap())
                .unwrap();
        assert!(
            intent_at <= created_at,
            "{amc_id}: intent {intent_at} must precede creation {created_at}"
        );
    }
}

/// The folder the child of the group-commit crash test works in.
const WRITERS_CHILD: &str = "CHRONICLE_TEST_WRITERS_CHILD";
/// Concurrent writers in the child, one thread each sharing one handle.
const WRITERS: usize = 16;
/// Weeks planned: far more than a round submits before it is killed.
const WRITER_WEEKS: u32 = 3000;

fn writers_schedule(dir: &Path) -> Schedule {
    let file = dir.join("weekly.toml");
    std::fs::write(
        &file,
        format!(
            "cron = \"0 0 6 * * Mon\"\ninstance_id = \"amccrash01\"\nworkflow_id = \"wf\"\n\
             week_start = \"monday\"\nbackfill_weeks = {WRITER_WEEKS}\n"
        ),
    )
    .unwrap();
    Schedule::from_file(&file, writers_today()).unwrap()
}

fn writers_today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 5).unwrap()
}

/// Not a test of its own: the child process of
/// `every_acknowledged_change_of_concurrent_writers_survives_a_kill_9`,
/// which runs it with `WRITERS_CHILD` set. `WRITERS` threads share one
/// `Journal` and submit pending weeks (intent, then AMC's answer), and
/// append a line to `acks` after each write returned: what was
/// acknowledged. Now and then the journal's commit counts too.
#[test]
#[ignore = "the child process of a crash test, which runs it"]
fn concurrent_writers_child() {
    let Some(dir) = std::env::var_os(WRITERS_CHILD) else {
        return;
    };
    let dir = Path::new(&dir);
    let schedule = writers_schedule(dir);
    let journal = Journal::open(&dir.join("journal.db")).unwrap();
    let weeks: Vec<_> = journal
        .plan(&schedule, writers_today())
        .unwrap()
        .work
        .into_iter()
        .filter(|week| week.open_attempt.is_none())
        .collect();
    let acks = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("acks"))
        .unwrap();
    // One write(2) per line to an O_APPEND file: lines never interleave,
    // and what was written survives the kill.
    let ack = |line: String| (&acks).write_all(line.as_bytes()).unwrap();
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let (journal, schedule, weeks, ack) = (&journal, &schedule, &weeks, &ack);
            scope.spawn(move || {
                for week in weeks.iter().skip(writer).step_by(WRITERS) {
                    let request = schedule.request(week.week_start);
                    let mut attempt = journal
                        .record_intent(week.week_id, &request, "crash")
                        .unwrap();
                    ack(format!("intent {} {}\n", attempt.id, week.week_id));
                    let execution = execution(format!("exec-{}", attempt.id));
                    journal
                        .record_submitted(&mut attempt, &execution, false)
                        .unwrap();
                    ack(format!(
                        "submitted {} {}\n",
                        attempt.id, execution.workflow_execution_id
                    ));
                    if writer == 0 {
                        let counts = journal.commit_counts();
                        ack(format!("counts {} {}\n", counts.changes, counts.commits));
                    }
                }
            });
        }
    });
}

fn execution(id: String) -> Execution {
    Execution {
        workflow_execution_id: id,
        workflow_id: "wf".into(),
        status: Status::Pending,
        create_time: None,
        last_updated_time: None,
        time_window_start: None,
        time_window_end: None,
        time_window_start_original: None,
        time_window_end_original: None,
        time_window_time_zone_original: None,
        parameter_values: None,
        status_reason: None,
        failure_reason: None,
        details: None,
        message: None,
    }
}

#[test]
fn every_acknowledged_change_of_concurrent_writers_survives_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    writers_schedule(dir.path());
    let journal_path = dir.path().join("journal.db");
    let acks_path = dir.path().join("acks");
    let mut rng = StdRng::seed_from_u64(16);
    let mut shared_commits = false;
    for round in 0..3 {
        std::fs::write(&acks_path, "").unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "journal::concurrent_writers_child",
                "--ignored",
                "--test-threads=1",
            ])
            .env(WRITERS_CHILD, dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Killed mid-stream, at a different moment each round.
        let kill_at = rng.random_range(200..1500);
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::fs::read_to_string(&acks_path).unwrap().lines().count() < kill_at {
            assert!(
                child.try_wait().unwrap().is_none(),
                "round {round}: the writers stopped before they were killed"
            );
            assert!(
                Instant::now() < deadline,
                "round {round}: the writers are too slow"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let mut intents = BTreeMap::new();
        let mut submitted = BTreeMap::new();
        for line in std::fs::read_to_string(&acks_path).unwrap().lines() {
            let words: Vec<&str> = line.split(' ').collect();
            match words[..] {
                ["intent", attempt, week] => {
                    intents.insert(attempt.to_owned(), week.to_owned());
                }
                ["submitted", attempt, execution] => {
                    submitted.insert(attempt.to_owned(), execution.to_owned());
                }
                ["counts", changes, commits] => {
                    shared_commits |=
                        changes.parse::<u64>().unwrap() > commits.parse::<u64>().unwrap();
                }
                _ => panic!("round {round}: a torn acknowledgement: {line:?}"),
            }
        }
        assert!(
            intents.len() >= kill_at / 3,
            "round {round}: {} intents",
            intents.len()
        );

        let journal = Journal::open(&journal_path).unwrap();
        assert_eq!(journal.verify_chain().unwrap(), None, "round {round}");
        drop(journal);
        let raw = rusqlite::Connection::open(&journal_path).unwrap();
        for (attempt, week) in &intents {
            let (stored_week, intent_events): (String, i64) = raw
                .query_row(
                    "SELECT week_id, (SELECT count(*) FROM events
                                      WHERE subject = a.id AND kind = 'attempt.intent')
                     FROM attempts a WHERE id = ?1",
                    [attempt],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .unwrap_or_else(|e| {
                    panic!("round {round}: acknowledged intent {attempt} is lost: {e}")
                });
            assert_eq!(
                (&stored_week, intent_events),
                (week, 1),
                "round {round}: {attempt}"
            );
        }
        for (attempt, execution) in &submitted {
            let stored: Option<String> = raw
                .query_row(
                    "SELECT amc_execution_id FROM attempts WHERE id = ?1",
                    [attempt],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(
                stored.as_ref(),
                Some(execution),
                "round {round}: {attempt} lost its answer"
            );
        }
    }
    assert!(
        shared_commits,
        "the writers never shared a commit: group commit was not exercised"
    );
}
