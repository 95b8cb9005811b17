//! Tests of the journal's schema as migrations leave it: a journal written
//! by the schema before V10 migrates forward with its data and its
//! readers' answers intact, and the readers of the indexes V10 replaced
//! still search an index instead of scanning the hot tables.
//!
//! Owns no product code; the migrations are `open`'s, the readers their
//! concerns'.

use std::collections::BTreeMap;

use chrono::Utc;
use rusqlite::Connection;
use uuid::Uuid;

use super::Journal;
use super::open::{APPLICATION_ID, embedded};

/// An attempt's request as the runner stores it.
const REQUEST: &str = r#"{"workflowId":"wf","timeWindowType":"EXPLICIT","timeWindowStart":"2025-01-06T00:00:00","timeWindowEnd":"2025-01-13T00:00:00","timeWindowTimeZone":"UTC","parameterValues":{}}"#;

/// Runs the journal's migrations up to `version` on a new file.
fn journal_at_version(path: &std::path::Path, version: i32) -> Connection {
    let mut connection = Connection::open(path).unwrap();
    connection
        .execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;
             PRAGMA application_id = {APPLICATION_ID};"
        ))
        .unwrap();
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(version))
        .run(&mut connection)
        .unwrap();
    connection
}

/// The totals V10's table holds, against the same counted from the rows.
fn totals_agree_with_rows(connection: &Connection) {
    let pairs = [
        (
            "SELECT collection_id, status, weeks, records FROM week_totals WHERE weeks != 0
             ORDER BY 1, 2",
            "SELECT collection_id, status, count(*), coalesce(sum(record_count), 0) FROM weeks
             GROUP BY 1, 2 ORDER BY 1, 2",
        ),
        (
            "SELECT '', state, attempts, 0 FROM attempt_totals WHERE attempts != 0 ORDER BY 2",
            "SELECT '', state, count(*), 0 FROM attempts GROUP BY 2 ORDER BY 2",
        ),
        (
            "SELECT '', '', executions, 0 FROM journal_totals WHERE id = 1",
            "SELECT '', '', count(*), 0 FROM attempts WHERE amc_execution_id IS NOT NULL",
        ),
    ];
    for (kept, counted) in pairs {
        let read = |sql: &str| -> Vec<(String, String, i64, i64)> {
            let mut statement = connection.prepare(sql).unwrap();
            statement
                .query_map([], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert_eq!(read(kept), read(counted), "{kept}");
    }
}

#[test]
fn a_journal_written_before_v10_migrates_with_its_totals_and_readers_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let collection = Uuid::now_v7().to_string();
    let week = |n: u32| format!("00000000-0000-4000-8000-00000000000{n}");
    let attempt = |n: &str| format!("0190{n:0>4}-0000-7000-8000-000000000000");
    {
        let old = journal_at_version(&path, 9);
        let at = "2026-01-05T00:00:00.000Z";
        let first = chrono::NaiveDate::from_ymd_opt(2025, 1, 6).unwrap();
        old.execute(
            "INSERT INTO collections (id, name, workflow_id, instance_id, start_date,
                 schedule_file, schedule_hash, created_at, updated_at, journal_seq)
             VALUES (?1, 'weekly', 'wf', 'amc1', '2025-01-06', 'weekly.toml', 'h', ?2, ?2, 1)",
            [&collection, at],
        )
        .unwrap();
        // Week n, its status and record count.
        let weeks = [
            (1, "completed", Some(10)),
            (2, "completed", Some(5)),
            (3, "running", None),
            (4, "running", None),
            (5, "failed", None),
            (6, "pending", None),
        ];
        for (n, status, records) in weeks {
            old.execute(
                "INSERT INTO weeks (id, collection_id, week_start, status, record_count,
                     created_at, updated_at, journal_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1)",
                rusqlite::params![
                    week(n),
                    collection,
                    (first + chrono::Days::new(7 * u64::from(n - 1))).to_string(),
                    status,
                    records,
                    at
                ],
            )
            .unwrap();
        }
        // Attempt, its week, state and AMC id; the last of a week is its current one.
        let attempts = [
            ("1", 1, "succeeded", Some("e1")),
            ("2a", 2, "failed", Some("e2a")),
            ("2", 2, "succeeded", Some("e2")),
            ("3", 3, "intent", None),
            ("4", 4, "submitted", Some("e4")),
            ("5", 5, "failed", Some("e5")),
            ("6", 6, "abandoned", None),
        ];
        for (n, w, state, amc) in attempts {
            old.execute(
                "INSERT INTO attempts (id, week_id, amc_execution_id, state, request,
                     triggered_by, created_at, updated_at, journal_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'schedule', ?6, ?6, 1)",
                rusqlite::params![attempt(n), week(w), amc, state, REQUEST, at],
            )
            .unwrap();
            old.execute(
                "UPDATE weeks SET attempt_id = ?1, attempts = attempts + 1 WHERE id = ?2",
                [attempt(n), week(w)],
            )
            .unwrap();
        }
    }

    let journal = Journal::open(&path).unwrap();
    totals_agree_with_rows(&journal.lock());

    let status = journal.status().unwrap();
    let summary = &status.collections[0];
    let by_status: BTreeMap<String, i64> = [
        ("completed", 2),
        ("failed", 1),
        ("pending", 1),
        ("running", 2),
    ]
    .map(|(s, n)| (s.to_owned(), n))
    .into();
    assert_eq!(summary.weeks_by_status, by_status);
    assert_eq!(summary.rows_collected, 15);
    assert_eq!(summary.live_executions, 2);
    assert_eq!(status.executions, 5);

    let metrics = journal.metrics_snapshot(Utc::now()).unwrap();
    let by_state: BTreeMap<String, i64> = [
        ("abandoned", 1),
        ("failed", 2),
        ("intent", 1),
        ("submitted", 1),
        ("succeeded", 2),
    ]
    .map(|(s, n)| (s.to_owned(), n))
    .into();
    assert_eq!(metrics.executions_by_state, by_state);
    assert_eq!(metrics.weeks_by_status, by_status);
    assert_eq!(metrics.completed_weeks, 2);
    assert_eq!(metrics.completed_with_execution_id, 2);

    let work = journal.work(Uuid::parse_str(&collection).unwrap()).unwrap();
    let open: Vec<(String, Option<String>)> = work
        .iter()
        .map(|w| {
            (
                w.week_id.to_string(),
                w.open_attempt.as_ref().map(|a| a.id.to_string()),
            )
        })
        .collect();
    assert_eq!(
        open,
        [
            (week(3), Some(attempt("3"))),
            (week(4), Some(attempt("4"))),
            (week(5), None),
            (week(6), None),
        ]
    );
    assert_eq!(
        journal.attempt_owning("e4").unwrap().map(|a| a.to_string()),
        Some(attempt("4"))
    );
    assert_eq!(journal.attempt_owning("none").unwrap(), None);
    assert_eq!(journal.record_runner_start("test").unwrap(), 2);

    // Writing on goes through V10's triggers and indexes: the totals stay
    // true, AMC's ids stay unique, references are enforced again.
    let week6 = work[3].clone();
    let request = crate::amc::CreateExecution {
        workflow_id: "wf".into(),
        time_window_type: "EXPLICIT".into(),
        time_window_start: "2025-02-10T00:00:00".into(),
        time_window_end: "2025-02-17T00:00:00".into(),
        time_window_time_zone: "UTC".into(),
        parameter_values: BTreeMap::new(),
    };
    journal
        .record_intent(week6.week_id, &request, "schedule")
        .unwrap();
    totals_agree_with_rows(&journal.lock());
    let connection = journal.lock();
    let duplicate = connection.execute(
        "UPDATE attempts SET amc_execution_id = 'e1' WHERE id = ?1",
        [attempt("5")],
    );
    assert!(duplicate.is_err(), "a second attempt took AMC id e1");
    let orphan = connection.execute(
        "INSERT INTO attempts (id, week_id, state, request, triggered_by, created_at,
             updated_at, journal_seq)
         VALUES ('x', 'no such week', 'intent', '{}', 't', 'now', 'now', 1)",
        [],
    );
    assert!(orphan.is_err(), "an attempt of no week was written");
}

/// The query plan of `sql`, one detail line per step.
fn plan_of(connection: &Connection, sql: &str) -> Vec<String> {
    let mut statement = connection
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap();
    statement
        .query_map([], |row| row.get(3))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn the_readers_of_the_indexes_v10_replaced_still_search_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("journal.db")).unwrap();
    let connection = journal.lock();
    // (reader, its query as it runs, the index it must search)
    let readers = [
        (
            "plan::work",
            "SELECT w.id, a.id FROM weeks w INDEXED BY weeks_to_do
             LEFT JOIN attempts a ON a.id = w.attempt_id AND a.state IN ('intent', 'submitted')
             WHERE w.collection_id = 'c' AND w.status IN ('pending', 'running', 'failed')
             ORDER BY w.week_start",
            "weeks_to_do",
        ),
        (
            "record_runner_start",
            "SELECT count(*) FROM attempts WHERE state IN ('intent', 'submitted')",
            "attempts_open",
        ),
        (
            "status: live executions",
            "SELECT count(*) FROM attempts a INDEXED BY attempts_open
             JOIN weeks w ON w.id = a.week_id
             WHERE w.collection_id = 'c' AND a.state IN ('intent', 'submitted')",
            "attempts_open",
        ),
        (
            "metrics: completed weeks without an AMC id",
            "SELECT count(*) FROM attempts a INDEXED BY attempts_open
             JOIN weeks w ON w.id = a.week_id AND w.attempt_id = a.id
             WHERE a.amc_execution_id IS NULL AND w.status = 'completed'",
            "attempts_open",
        ),
        (
            "cancel_targets",
            "SELECT a.id FROM attempts a JOIN weeks w ON w.id = a.week_id
             JOIN collections c ON c.id = w.collection_id
             WHERE a.state IN ('intent', 'submitted')
               AND (a.id = 'k' OR a.amc_execution_id = 'k' OR w.week_start = 'k')
             ORDER BY c.name, w.week_start",
            "attempts_open",
        ),
        (
            "attempt_owning",
            "SELECT id FROM attempts WHERE amc_execution_id = 'e'",
            "attempts_by_execution",
        ),
        (
            "lineage: an attempt or AMC id",
            "SELECT week_id FROM attempts WHERE id = 'k' OR amc_execution_id = 'k'",
            "attempts_by_execution",
        ),
        (
            "lineage: a week's attempts",
            "SELECT id FROM attempts WHERE week_id = 'w' ORDER BY created_at, id",
            "attempts_by_week",
        ),
        (
            "status: weeks by status",
            "SELECT status, weeks FROM week_totals WHERE collection_id = 'c'",
            "PRIMARY KEY",
        ),
    ];
    for (reader, sql, index) in readers {
        let plan = plan_of(&connection, sql);
        assert!(
            plan.iter().any(|step| step.contains(index)),
            "{reader} does not use {index}: {plan:?}"
        );
        // A scan is only of a partial index, which holds the few rows the
        // reader wants; never of a hot table or a whole index of one.
        assert!(
            !plan.iter().any(|step| {
                let hot = ["attempts", "a", "weeks", "w", "totals", "events"]
                    .iter()
                    .any(|table| step.starts_with(&format!("SCAN {table}")));
                hot && !["weeks_to_do", "attempts_open"]
                    .iter()
                    .any(|partial| step.contains(&format!("INDEX {partial}")))
            }),
            "{reader} scans a hot table: {plan:?}"
        );
    }
}
