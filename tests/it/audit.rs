//! Audits from the journal alone: tampering behind chronicle's back (an
//! edited, a deleted, a consistently rewritten event; a changed state row)
//! is named; evidence files verify offline and fail when edited; the
//! listings' JSON parses.

use std::path::Path;

use chronicle::journal::{GENESIS, event_hash};
use serde_json::Value;

use crate::helpers::{TestApp, quick_sim, run_chronicle, schedule, spawn_app, text};

async fn backfilled(weeks: u32) -> TestApp {
    let app = spawn_app(quick_sim(), &schedule(weeks, 0)).await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    app
}

async fn audit(app: &TestApp) -> (Option<i32>, Value) {
    let output = app.chronicle(&["audit", "--json"]).await;
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("audit --json does not parse ({e}): {}", text(&output)));
    (output.status.code(), report)
}

fn findings(report: &Value) -> Vec<(String, String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_owned(),
                f["subject"].as_str().unwrap().to_owned(),
                f["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// An attacker's connection: the append-only triggers dropped.
fn tamper(app: &TestApp) -> rusqlite::Connection {
    let raw = rusqlite::Connection::open(app.journal_path()).unwrap();
    raw.execute_batch("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;")
        .unwrap();
    raw
}

fn first_succeeded(raw: &rusqlite::Connection) -> i64 {
    raw.query_row(
        "SELECT min(seq) FROM events WHERE kind = 'attempt.succeeded'",
        [],
        |row| row.get(0),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_backfill_audits_clean_against_the_log_and_postgres() {
    let app = backfilled(3).await;
    let (code, report) = audit(&app).await;
    assert_eq!(code, Some(0), "{report:#}");
    assert!(findings(&report).is_empty(), "{report:#}");
    assert!(report["head"]["seq"].as_i64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_failures_and_adopted_executions_replay_to_the_same_state_tables() {
    let sim = chronicle::amc::simulator::SimConfig {
        // High enough that ten weeks see both, whatever order runs them in.
        failure_rate: 0.5,
        drop_create_rate: 0.5,
        ..quick_sim()
    };
    let app = spawn_app(sim, &schedule(10, 2)).await;
    app.chronicle(&["backfill", "weekly"]).await;
    let raw = rusqlite::Connection::open(app.journal_path()).unwrap();
    let kinds: Vec<String> = raw
        .prepare("SELECT DISTINCT kind FROM events")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    for kind in ["attempt.failed", "attempt.adopted"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }

    let (code, report) = audit(&app).await;
    assert_eq!(code, Some(0), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_edited_with_sqlite_is_named_by_audit() {
    let app = backfilled(2).await;
    let raw = tamper(&app);
    let edited = first_succeeded(&raw);
    raw.execute(
        "UPDATE events SET payload = replace(payload, 'record_count', 'record_kount') WHERE seq = ?1",
        [edited],
    )
    .unwrap();

    let (code, report) = audit(&app).await;
    assert_eq!(code, Some(1), "{report:#}");
    let chain: Vec<_> = findings(&report)
        .into_iter()
        .filter(|f| f.0 == "chain")
        .collect();
    assert_eq!(chain.len(), 1, "{report:#}");
    assert_eq!(chain[0].1, format!("event {edited}"));
    assert!(chain[0].2.contains("does not match its hash"), "{chain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creating_event_whose_payload_is_not_json_is_named_by_audit_not_an_error() {
    // The walk reads a week's collection from its creating event to group
    // the log: a payload that does not parse must become findings (the
    // chain, the event, the rows it leaves unmatched), not end the audit.
    let app = backfilled(2).await;
    let raw = tamper(&app);
    let edited: i64 = raw
        .query_row(
            "SELECT min(seq) FROM events WHERE kind = 'week.added'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    raw.execute(
        "UPDATE events SET payload = 'not json' WHERE seq = ?1",
        [edited],
    )
    .unwrap();

    let (code, report) = audit(&app).await;
    assert_eq!(code, Some(1), "{report:#}");
    let found = findings(&report);
    assert!(
        found
            .iter()
            .any(|f| f.0 == "chain" && f.1 == format!("event {edited}")),
        "{report:#}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.0 == "state" && f.1 == format!("event {edited}")),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_event_is_named_as_the_gap_by_audit() {
    let app = backfilled(2).await;
    let raw = tamper(&app);
    let deleted = first_succeeded(&raw);
    raw.execute("DELETE FROM events WHERE seq = ?1", [deleted])
        .unwrap();

    let (code, report) = audit(&app).await;
    assert_eq!(code, Some(1), "{report:#}");
    let found = findings(&report);
    assert!(
        found.iter().any(|f| f.0 == "chain"
            && f.1 == format!("event {deleted}")
            && f.2 == format!("event {deleted} is missing")),
        "{report:#}"
    );
    // The replay misses the outcome the deleted event recorded.
    assert!(found.iter().any(|f| f.0 == "state"), "{report:#}");
}

/// The audit's only finding of check `state`, as `(subject, detail)`.
fn the_one_state_finding(report: &Value) -> (String, String) {
    let state: Vec<_> = findings(report)
        .into_iter()
        .filter(|f| f.0 == "state")
        .collect();
    assert_eq!(state.len(), 1, "{report:#}");
    let (_, subject, detail) = state.into_iter().next().expect("one finding");
    (subject, detail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_row_changed_behind_the_logs_back_is_named_by_audit() {
    let app = backfilled(2).await;
    let raw = rusqlite::Connection::open(app.journal_path()).unwrap();
    let week: String = raw
        .query_row(
            "SELECT id FROM weeks WHERE status = 'completed' LIMIT 1",
            [],
            |row| row.get(0),
        )
        .unwrap();
    raw.execute(
        "UPDATE weeks SET record_count = record_count + 1 WHERE id = ?1",
        [&week],
    )
    .unwrap();

    let (code, report) = audit(&app).await;
    assert_eq!(code, Some(1), "{report:#}");
    let (subject, detail) = the_one_state_finding(&report);
    assert_eq!(subject, format!("week {week}"));
    assert!(detail.starts_with("record_count:"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_moved_to_another_collection_behind_the_logs_back_is_named_by_its_column() {
    // The audit replays one collection at a time: the moved week and its
    // attempts sit in another group than the log puts them in, and must
    // still be paired up and named by the column that differs.
    let app = backfilled(2).await;
    let raw = rusqlite::Connection::open(app.journal_path()).unwrap();
    let week: String = raw
        .query_row("SELECT id FROM weeks LIMIT 1", [], |row| row.get(0))
        .unwrap();
    // As a hand edit with the sqlite3 shell would (no foreign keys).
    raw.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    raw.execute(
        "UPDATE weeks SET collection_id = 'ffffffff-ffff-ffff-ffff-ffffffffffff' WHERE id = ?1",
        [&week],
    )
    .unwrap();

    let (code, report) = audit(&app).await;
    assert_eq!(code, Some(1), "{report:#}");
    let (subject, detail) = the_one_state_finding(&report);
    assert_eq!(subject, format!("week {week}"));
    assert!(detail.starts_with("collection_id:"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_rewritten_consistently_is_caught_by_the_chain_head_postgres_holds() {
    let app = backfilled(2).await;
    let raw = tamper(&app);
    let from = first_succeeded(&raw);
    // Forge a checksum in the event, the state tables and every later hash,
    // so the journal on its own is consistent again.
    let forged = "f".repeat(64);
    raw.execute(
        "UPDATE events SET payload = json_set(payload, '$.data_checksum', ?1) WHERE seq = ?2",
        rusqlite::params![forged, from],
    )
    .unwrap();
    let (attempt, week): (String, String) = raw
        .query_row(
            "SELECT subject, json_extract(payload, '$.week_id') FROM events WHERE seq = ?1",
            [from],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    raw.execute(
        "UPDATE attempts SET data_checksum = ?1 WHERE id = ?2",
        [&forged, &attempt],
    )
    .unwrap();
    raw.execute(
        "UPDATE weeks SET data_checksum = ?1 WHERE id = ?2",
        [&forged, &week],
    )
    .unwrap();
    let events: Vec<(i64, String, String, String, String)> = raw
        .prepare("SELECT seq, at, kind, subject, payload FROM events ORDER BY seq")
        .unwrap()
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
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let mut prev = GENESIS.to_owned();
    for (seq, at, kind, subject, payload) in events {
        let hash = event_hash(seq, &at, &kind, &subject, &payload, &prev);
        raw.execute(
            "UPDATE events SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![prev, hash, seq],
        )
        .unwrap();
        prev = hash;
    }
    let journal = chronicle::journal::Journal::open(&app.journal_path()).unwrap();
    assert_eq!(
        journal.verify_chain().unwrap(),
        None,
        "the forgery is consistent"
    );

    let (code, report) = audit(&app).await;
    assert_eq!(code, Some(1), "{report:#}");
    let found = findings(&report);
    assert!(
        !found.iter().any(|f| f.0 == "chain" || f.0 == "state"),
        "the journal alone looks sound: {report:#}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.0 == "chain head" && f.2.contains("the chain was rewritten")),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_evidence_file_verifies_anywhere_and_fails_when_one_byte_changes() {
    let app = backfilled(2).await;
    let file = app.dir.path().join("evidence.ndjson");
    let file_arg = file.to_str().unwrap();
    let output = app
        .chronicle(&["export", "--evidence", file_arg, "--schedule", "weekly"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    // No config, no journal, no database: a config path that does not exist.
    let nowhere = Path::new("/nonexistent/chronicle/config.toml");
    let verified = run_chronicle(nowhere, &["audit", "--evidence", file_arg, "--json"]).await;
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    let verdict: Value = serde_json::from_slice(&verified.stdout).unwrap();
    let head = verdict["header"]["head"]["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        verdict["events_checked"], verdict["header"]["events"],
        "{verdict:#}"
    );
    let journal = chronicle::journal::Journal::open(&app.journal_path()).unwrap();
    assert_eq!(journal.chain_head().unwrap().unwrap().hash, head);
    // The head Postgres recorded at the last sync is in the file.
    let client = crate::helpers::connect(&app.database_url).await;
    let recorded: String = client
        .query_one(
            "SELECT hash FROM chronicle.chain_heads WHERE journal_id = $1 ORDER BY seq DESC LIMIT 1",
            &[&verdict["header"]["journal_id"].as_str().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    let expected = run_chronicle(
        nowhere,
        &["audit", "--evidence", file_arg, "--expect-head", &recorded],
    )
    .await;
    assert_eq!(expected.status.code(), Some(0), "{}", text(&expected));
    let other = run_chronicle(
        nowhere,
        &["audit", "--evidence", file_arg, "--expect-head", GENESIS],
    )
    .await;
    assert_eq!(other.status.code(), Some(1), "{}", text(&other));

    // One byte: a digit of a row count.
    let mut bytes = std::fs::read(&file).unwrap();
    let needle = b"record_count\\\":";
    let at = find(&bytes, needle).expect("a row count in the file") + needle.len();
    bytes[at] = if bytes[at] == b'9' {
        b'8'
    } else {
        bytes[at] + 1
    };
    std::fs::write(&file, &bytes).unwrap();
    let failed = run_chronicle(nowhere, &["audit", "--evidence", file_arg]).await;
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(
        String::from_utf8_lossy(&failed.stdout).contains("does not match its hash"),
        "{}",
        text(&failed)
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listing_prints_json_that_parses_and_exports_in_three_formats() {
    let app = backfilled(3).await;
    let weeks = app.chronicle(&["weeks", "weekly", "--json"]).await;
    assert_eq!(weeks.status.code(), Some(0), "{}", text(&weeks));
    let weeks: Value = serde_json::from_slice(&weeks.stdout).unwrap();
    assert_eq!(weeks.as_array().unwrap().len(), 3);
    assert!(
        weeks
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["synced"] == true)
    );

    let grid = app.chronicle(&["weeks", "weekly", "--grid"]).await;
    assert!(
        String::from_utf8_lossy(&grid.stdout).contains(" CCC\n"),
        "{}",
        text(&grid)
    );
    let unknown = app.chronicle(&["weeks", "nope"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    let narrowed = app
        .chronicle(&["export", "--what", "events", "--schedule", "weekly"])
        .await;
    assert_eq!(narrowed.status.code(), Some(2), "{}", text(&narrowed));

    let executions = app
        .chronicle(&[
            "executions",
            "--status",
            "SUCCEEDED",
            "--since",
            "2000-01-01",
            "--json",
        ])
        .await;
    let executions: Value = serde_json::from_slice(&executions.stdout).unwrap();
    assert_eq!(executions.as_array().unwrap().len(), 3);

    let events = app
        .chronicle(&["events", "--kind", "attempt.succeeded", "--json"])
        .await;
    assert_eq!(events.status.code(), Some(0), "{}", text(&events));
    let lines: Vec<Value> = String::from_utf8_lossy(&events.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|e| e["kind"] == "attempt.succeeded"));

    let audit = app.chronicle(&["audit", "--json"]).await;
    serde_json::from_slice::<Value>(&audit.stdout).unwrap();

    for (format, parse) in [("json", 0), ("ndjson", 1), ("csv", 2)] {
        let out = app
            .chronicle(&["export", "--what", "events", "--format", format])
            .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        let count = match parse {
            0 => serde_json::from_str::<Vec<Value>>(&body).unwrap().len(),
            1 => body
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
                .len(),
            _ => body.lines().count() - 1,
        };
        let head = report_head(&app).await;
        // CSV quotes payloads, which hold no newlines: one line per event.
        assert_eq!(count as i64, head, "{format}: {body}");
    }
    let out = app.dir.path().join("weeks.csv");
    let written = app
        .chronicle(&[
            "export",
            "--what",
            "weeks",
            "--format",
            "csv",
            "--out",
            out.to_str().unwrap(),
        ])
        .await;
    assert_eq!(written.status.code(), Some(0), "{}", text(&written));
    let csv = std::fs::read_to_string(out).unwrap();
    assert!(csv.starts_with("schedule,week_id,week_start,"), "{csv}");
    assert_eq!(csv.lines().count(), 4, "{csv}");
}

async fn report_head(app: &TestApp) -> i64 {
    let (_, report) = audit(app).await;
    report["head"]["seq"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_shows_the_whole_chain_down_to_the_values_postgres_acknowledged() {
    let app = backfilled(1).await;
    let amc_id = app.ledger()[0].execution.workflow_execution_id.clone();
    let output = app.chronicle(&["lineage", "--json", &amc_id]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let lineage: Value = serde_json::from_slice(&output.stdout).unwrap();
    let week = &lineage["weeks"][0];
    assert_eq!(week["workflow_id"], "campaign_performance");
    assert_eq!(week["instance_id"], "amctest01");
    let attempt = &week["attempts"][0];
    assert_eq!(attempt["schedule_hash_at_intent"], week["schedule_hash"]);
    assert_eq!(attempt["request"]["parameterValues"]["region"], "eu");

    // What lineage says Postgres holds is what Postgres holds.
    let client = crate::helpers::connect(&app.database_url).await;
    let row = client
        .query_one(
            "SELECT status, execution_id::text, amc_execution_id, record_count, data_checksum,
                journal_seq FROM report_data_weeks WHERE id = $1::text::uuid",
            &[&week["id"].as_str().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(week["postgres"]["exact"], true, "{week:#}");
    let held = &week["postgres"]["values"];
    assert_eq!(held["status"], row.get::<_, String>(0));
    assert_eq!(held["execution_id"], row.get::<_, String>(1));
    assert_eq!(held["amc_execution_id"], row.get::<_, String>(2));
    assert_eq!(held["record_count"], row.get::<_, i32>(3));
    assert_eq!(held["data_checksum"], row.get::<_, String>(4));
    assert_eq!(held["journal_seq"], row.get::<_, i64>(5));
    let execution = client
        .query_one(
            "SELECT status, row_count, journal_seq FROM workflow_executions WHERE amc_execution_id = $1",
            &[&amc_id],
        )
        .await
        .unwrap();
    let held = &attempt["postgres"]["values"];
    assert_eq!(held["status"], execution.get::<_, String>(0));
    assert_eq!(held["row_count"], execution.get::<_, i32>(1));
    assert_eq!(held["journal_seq"], execution.get::<_, i64>(2));

    let printed = app.chronicle(&["lineage", &amc_id]).await;
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("Postgres holds for the week"), "{printed}");
    assert!(printed.contains("request:"), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_prints_events_appended_after_it_started() {
    use tokio::io::AsyncBufReadExt;

    let app = backfilled(1).await;
    let head = report_head(&app).await;
    let mut follower = crate::helpers::command(&app.config_path, &["events", "--follow", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(follower.stdout.take().unwrap()).lines();
    for expected in 1..=head {
        assert_eq!(next_seq(&mut lines).await, expected);
    }
    // A second backfill appends at least its `runner.started` event.
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(next_seq(&mut lines).await, head + 1);
    follower.kill().await.unwrap();
}

async fn next_seq(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> i64 {
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("the follower prints within 30 s")
        .unwrap()
        .expect("the follower keeps running");
    let event: Value = serde_json::from_str(&line).unwrap();
    event["seq"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_cut_short_is_caught_by_the_chain_head_postgres_holds() {
    let app = backfilled(1).await;
    let head = report_head(&app).await;
    // Removing the newest event leaves no gap for the chain check to see.
    tamper(&app)
        .execute("DELETE FROM events WHERE seq = ?1", [head])
        .unwrap();
    let journal = chronicle::journal::Journal::open(&app.journal_path()).unwrap();
    assert_eq!(journal.verify_chain().unwrap(), None);

    let (code, report) = audit(&app).await;
    assert_eq!(code, Some(1), "{report:#}");
    assert!(
        findings(&report).iter().any(|f| f.0 == "chain head"
            && f.1 == format!("event {head}")
            && f.2.contains("no longer holds it")),
        "{report:#}"
    );
}
