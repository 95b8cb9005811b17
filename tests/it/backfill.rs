//! `chronicle backfill` end to end: simulator over HTTP, real journal, real
//! Postgres, checked against the simulator's own ledger.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use chronicle::amc::Api;
use chronicle::amc::simulator::SimConfig;
use chronicle::journal::identity;
use sha2::{Digest, Sha256};

use crate::helpers::{connect, quick_sim, schedule, spawn_app, text};

/// Fetches a result the simple way, independently of chronicle's streaming
/// code: (data rows, sha256 of the decompressed concatenation).
async fn expected_result(app: &crate::helpers::TestApp, execution_id: &str) -> (i32, String) {
    let urls = app
        .sim
        .simulator
        .download_urls("amctest01", execution_id)
        .await
        .unwrap();
    let mut all = Vec::new();
    for (index, url) in urls.iter().enumerate() {
        let http = chronicle::amc::client::http_client();
        let bytes = http
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let plain = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        } else {
            bytes
        };
        let text = String::from_utf8(plain).unwrap();
        let body = if index == 0 {
            text.as_str()
        } else {
            text.split_once('\n').map_or("", |(_, rest)| rest)
        };
        all.extend_from_slice(body.as_bytes());
    }
    let rows = String::from_utf8(all.clone()).unwrap().lines().count() as i32 - 1;
    (rows, hex::encode(Sha256::digest(&all)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_lands_every_week_in_postgres_with_its_execution_and_checksum() {
    let sim = SimConfig {
        gzip_results: true,
        result_parts: 2,
        ..quick_sim()
    };
    let app = spawn_app(sim, &schedule(6, 0)).await;

    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 updates pending sync"));

    let ledger = app.ledger();
    assert_eq!(ledger.len(), 6, "one AMC execution per week");
    let pg = connect(&app.database_url).await;
    let collection_id = identity::collection_id("weekly");
    let rows = pg
        .query(
            "SELECT w.id, w.collection_id, w.week_start_date, w.week_end_date, w.status,
                    w.execution_id, w.amc_execution_id, w.record_count, w.data_checksum,
                    e.amc_execution_id, e.status, e.row_count, e.execution_parameters
             FROM report_data_weeks w JOIN workflow_executions e ON e.id = w.execution_id
             ORDER BY w.week_start_date",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 6, "every week has its execution_id filled in");
    let by_amc_id: HashMap<_, _> = ledger
        .iter()
        .map(|e| (e.execution.workflow_execution_id.clone(), e))
        .collect();
    for row in &rows {
        let start: chrono::NaiveDate = row.get(2);
        let end: chrono::NaiveDate = row.get(3);
        assert_eq!(
            row.get::<_, uuid::Uuid>(0),
            identity::week_id(collection_id, start)
        );
        assert_eq!(row.get::<_, uuid::Uuid>(1), collection_id);
        assert_eq!(end - start, chrono::Duration::days(6));
        assert_eq!(row.get::<_, &str>(4), "completed");
        let amc_id: String = row.get(6);
        assert_eq!(row.get::<_, String>(9), amc_id, "week and execution agree");
        assert_eq!(
            row.get::<_, &str>(10),
            "completed",
            "the application's word, not AMC's"
        );
        let created = by_amc_id
            .get(&amc_id)
            .unwrap_or_else(|| panic!("{amc_id} is not in the simulator's ledger"));
        assert_eq!(
            created.request.time_window_start,
            format!("{start}T00:00:00"),
            "the execution covers its week"
        );
        let (expected_rows, expected_checksum) = expected_result(&app, &amc_id).await;
        assert_eq!(row.get::<_, i32>(7), expected_rows);
        assert_eq!(row.get::<_, i32>(11), expected_rows);
        assert_eq!(row.get::<_, String>(8), expected_checksum);
        let parameters: serde_json::Value = row.get(12);
        assert_eq!(parameters["parameterValues"]["region"], "eu");
    }
    let collection = pg
        .query_one(
            "SELECT configuration->>'schedule', status, weeks_completed FROM report_data_collections WHERE id = $1",
            &[&collection_id],
        )
        .await
        .unwrap();
    assert_eq!(collection.get::<_, &str>(0), "weekly");
    assert_eq!(collection.get::<_, &str>(1), "completed");
    assert_eq!(collection.get::<_, i32>(2), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_backfill_submits_nothing_new() {
    let app = spawn_app(quick_sim(), &schedule(4, 0)).await;
    let first = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let created = app.ledger().len();
    assert_eq!(created, 4);

    let second = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_eq!(app.ledger().len(), created, "no week was submitted again");
    let creates = app
        .sim
        .simulator
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/workflowExecutions"))
        .count();
    assert_eq!(creates, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weeks_that_keep_failing_are_retried_then_listed_with_exit_code_1() {
    let sim = SimConfig {
        failure_rate: 1.0,
        ..quick_sim()
    };
    let app = spawn_app(sim, &schedule(2, 1)).await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("2 failed"), "{stdout}");
    assert_eq!(stdout.matches("not completed").count(), 2, "{stdout}");

    // max_retries = 1: two attempts per week, both journaled and synced.
    let mut per_week: BTreeMap<String, usize> = BTreeMap::new();
    for entry in app.ledger() {
        *per_week.entry(entry.request.time_window_start).or_default() += 1;
    }
    assert_eq!(per_week.values().copied().collect::<Vec<_>>(), vec![2, 2]);
    let pg = connect(&app.database_url).await;
    let failed: i64 = pg
        .query_one(
            "SELECT count(*) FROM report_data_weeks WHERE status = 'failed'
               AND error_message IS NOT NULL AND execution_id IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(failed, 2);
    let executions: i64 = pg
        .query_one(
            "SELECT count(*) FROM workflow_executions WHERE status = 'failed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(executions, 4);
}
