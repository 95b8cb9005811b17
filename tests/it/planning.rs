//! Costs that must not grow with history (BENCHMARKS.md, scale): planning
//! reads only the weeks outside the run it already recorded, and `status`
//! reads totals kept by triggers. These check both still tell the truth.

use chronicle::journal::Journal;
use chronicle::schedule::Schedule;
use chrono::{Datelike, NaiveDate, Weekday};

fn schedule(dir: &std::path::Path, week_start: &str, weeks: u32, today: NaiveDate) -> Schedule {
    let file = dir.join("weekly.toml");
    std::fs::write(
        &file,
        format!(
            r#"cron = "0 0 6 * * Mon"
instance_id = "amctest01"
workflow_id = "campaign_performance"
week_start = "{week_start}"
backfill_weeks = {weeks}
"#
        ),
    )
    .unwrap();
    Schedule::from_file(&file, today).unwrap()
}

#[test]
fn planning_again_adds_only_the_weeks_an_earlier_start_brings_and_then_none() {
    let dir = tempfile::tempdir().unwrap();
    let today = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
    let journal = Journal::open(&dir.path().join("journal.db")).unwrap();

    let first = journal
        .plan(&schedule(dir.path(), "monday", 5, today), today)
        .unwrap();
    assert_eq!((first.weeks_added, first.work.len()), (5, 5));

    let widened = journal
        .plan(&schedule(dir.path(), "monday", 8, today), today)
        .unwrap();
    assert_eq!((widened.weeks_added, widened.work.len()), (3, 8));
    let starts: Vec<NaiveDate> = widened.work.iter().map(|w| w.week_start).collect();
    assert!(
        starts.windows(2).all(|w| (w[1] - w[0]).num_days() == 7),
        "{starts:?}"
    );

    let again = journal
        .plan(&schedule(dir.path(), "monday", 8, today), today)
        .unwrap();
    assert_eq!((again.weeks_added, again.work.len()), (0, 8));

    // Weeks that became due since are added after the recorded run.
    let later = today + chrono::Days::new(14);
    let moved_on = journal
        .plan(&schedule(dir.path(), "monday", 8, later), later)
        .unwrap();
    assert_eq!(moved_on.weeks_added, 2);
}

#[test]
fn planning_after_week_start_changed_adds_every_week_of_the_new_alignment() {
    let dir = tempfile::tempdir().unwrap();
    let today = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
    let journal = Journal::open(&dir.path().join("journal.db")).unwrap();
    let mondays = journal
        .plan(&schedule(dir.path(), "monday", 4, today), today)
        .unwrap();
    assert_eq!(mondays.weeks_added, 4);

    // Sunday weeks fall between the recorded Mondays: none may be skipped
    // for lying inside the recorded run.
    let sundays = journal
        .plan(&schedule(dir.path(), "sunday", 6, today), today)
        .unwrap();
    assert_eq!(sundays.weeks_added, 6);
    let added: Vec<NaiveDate> = sundays
        .work
        .iter()
        .map(|w| w.week_start)
        .filter(|d| d.weekday() == Weekday::Sun)
        .collect();
    assert_eq!(added.len(), 6, "{:?}", sundays.work);
    assert_eq!(sundays.work.len(), 10);
}

/// `status` reads totals kept by triggers (V7) instead of counting the
/// history; after a backfill with failures and retries they must equal a
/// count of the journal's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_totals_equal_a_count_of_the_journal_after_failures_and_retries() {
    let app = crate::helpers::spawn_app(
        chronicle::amc::simulator::SimConfig {
            failure_rate: 0.4,
            ..crate::helpers::quick_sim()
        },
        &crate::helpers::schedule(12, 1),
    )
    .await;
    let backfill = app.chronicle(&["backfill", "weekly"]).await;
    assert!(
        matches!(backfill.status.code(), Some(0 | 1)),
        "{}",
        crate::helpers::text(&backfill)
    );
    let status = app.chronicle(&["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();

    let db = rusqlite::Connection::open(app.journal_path()).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |row| row.get(0)).unwrap() };
    let collection = &status["collections"][0];
    for state in ["pending", "running", "completed", "failed"] {
        assert_eq!(
            collection["weeks_by_status"][state].as_i64().unwrap(),
            count(&format!(
                "SELECT count(*) FROM weeks WHERE status = '{state}'"
            )),
            "weeks {state}"
        );
    }
    let failed_weeks = count("SELECT count(*) FROM weeks WHERE status = 'failed'");
    let failed_attempts = count("SELECT count(*) FROM attempts WHERE state = 'failed'");
    assert!(
        failed_attempts > 0,
        "the simulator failed no execution: the test proves nothing ({failed_weeks} weeks failed)"
    );
    assert_eq!(
        collection["rows_collected"].as_i64().unwrap(),
        count("SELECT coalesce(sum(record_count), 0) FROM weeks WHERE status = 'completed'")
    );
    assert_eq!(
        status["executions"].as_i64().unwrap(),
        count("SELECT count(*) FROM attempts WHERE amc_execution_id IS NOT NULL")
    );
}
