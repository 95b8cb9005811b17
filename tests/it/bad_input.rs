//! Bad input (I7): exit code 2, an error naming the file and key, nothing
//! submitted to AMC, and nothing already in the journal touched.

use crate::helpers::{TestApp, quick_sim, schedule, spawn_app, text};

async fn refused(app: &TestApp, args: &[&str], expected: &[&str]) {
    let output = app.chronicle(args).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for part in expected {
        assert!(
            stderr.contains(part),
            "error should name {part:?}: {stderr}"
        );
    }
    assert!(app.ledger().is_empty(), "nothing may reach AMC");
}

fn edit_config(app: &TestApp, from: &str, to: &str) {
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    assert!(config.contains(from), "{from:?} not in config");
    app.set_config(&config.replacen(from, to, 1));
}

fn write_schedule(app: &TestApp, body: &str) {
    std::fs::write(app.dir.path().join("schedules/weekly.toml"), body).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_config_key_names_the_file_and_the_key() {
    let app = spawn_app(quick_sim(), &schedule(2, 0)).await;
    edit_config(&app, "poll_interval", "pol_interval");
    refused(
        &app,
        &["backfill", "weekly"],
        &["config.toml", "pol_interval"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_value_names_the_key() {
    let app = spawn_app(quick_sim(), &schedule(2, 0)).await;
    edit_config(&app, "poll_interval = \"20ms\"", "poll_interval = \"soon\"");
    refused(
        &app,
        &["backfill", "weekly"],
        &["config.toml", "poll_interval"],
    )
    .await;
    edit_config(&app, "[journal]", "[journal\n");
    refused(&app, &["status"], &["config.toml"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_config_file_that_was_named_is_an_error() {
    let app = spawn_app(quick_sim(), &schedule(2, 0)).await;
    std::fs::remove_file(&app.config_path).unwrap();
    refused(&app, &["status"], &["config.toml", "not found"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_amc_credentials_are_named_before_anything_is_sent() {
    let app = spawn_app(quick_sim(), &schedule(2, 0)).await;
    edit_config(&app, "client_secret = \"sim-secret\"", "");
    refused(
        &app,
        &["backfill", "weekly"],
        &["amc.client_secret", "CHRONICLE_AMC__CLIENT_SECRET"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_schedule_key_is_named_with_its_file() {
    let app = spawn_app(quick_sim(), &schedule(2, 0)).await;
    let good = schedule(2, 0);
    let cases = [
        (good.replace("0 0 6 * * Mon", "every monday"), "cron"),
        (format!("timezone = \"Mars/Base\"\n{good}"), "timezone"),
        (
            good.replace("backfill_weeks = 2", "backfill_from = 2999-01-04"),
            "backfill_from",
        ),
        (
            good.replace("week_start = \"monday\"", "week_start = \"friday\""),
            "week_start",
        ),
    ];
    for (body, key) in cases {
        write_schedule(&app, &body);
        refused(&app, &["backfill", "weekly"], &["weekly.toml", key]).await;
        refused(&app, &["run"], &["weekly.toml", key]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_journal_is_refused_and_left_byte_for_byte() {
    let app = spawn_app(quick_sim(), &schedule(2, 0)).await;
    let path = app.journal_path();

    std::fs::write(&path, b"name,amount\nalice,3\n").unwrap();
    let before = std::fs::read(&path).unwrap();
    refused(
        &app,
        &["backfill", "weekly"],
        &["journal.db", "not a chronicle journal"],
    )
    .await;
    assert_eq!(std::fs::read(&path).unwrap(), before);

    std::fs::remove_file(&path).unwrap();
    {
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute_batch(
                "CREATE TABLE invoices (id INTEGER PRIMARY KEY); INSERT INTO invoices VALUES (1);",
            )
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    refused(&app, &["status"], &["journal.db", "another application"]).await;
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(!app.dir.path().join("journal.db-wal").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_ids_in_the_environment_are_taken_as_text() {
    let app = spawn_app(quick_sim(), &schedule(1, 0)).await;
    let output = crate::helpers::command(&app.config_path, &["backfill", "weekly"])
        .env("CHRONICLE_AMC__ADVERTISER_ID", "1234567890")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
}
