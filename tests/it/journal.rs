//! The journal's own guarantees: a tamper-evident event log (I6) and a
//! lineage that resolves every kind of id to the same week.

use chronicle::journal::Journal;

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
