//! The reconciler against a real Postgres: outages lose nothing (I4), and an
//! older journal state never overwrites a newer one (I3).

use chronicle::amc::simulator::SimConfig;
use chronicle::journal::Journal;
use chronicle::throwaway::Cluster;
use chronicle::warehouse::Warehouse;
use chronicle::warehouse::tls::TlsOptions;

use crate::helpers::{
    completed_weeks, connect, fresh_database, quick_sim, schedule, spawn_app,
    spawn_app_with_database, text,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_during_a_backfill_then_sync_converges() {
    // Its own cluster: this test stops the server.
    let mut cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let url = fresh_database(&cluster.url("postgres")).await;
    let app = spawn_app_with_database(quick_sim(), &schedule(5, 0), url.clone()).await;
    cluster.stop().unwrap();

    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "Postgres away is not a failure: {}",
        text(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("5 weeks completed"), "{stdout}");
    assert!(
        stdout.contains("sync failed") && stdout.contains("wait in the journal"),
        "{stdout}"
    );

    let status = app.chronicle(&["status", "--json"]).await;
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(report["pending_sync"].as_i64().unwrap() >= 11, "{report}");
    assert!(report["last_sync_error"].is_string(), "{report}");

    let refused = app.chronicle(&["sync"]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));

    cluster.restart().unwrap();
    let synced = app.chronicle(&["sync"]).await;
    assert_eq!(synced.status.code(), Some(0), "{}", text(&synced));
    assert!(String::from_utf8_lossy(&synced.stdout).contains("0 updates pending sync"));

    let pg = connect(&url).await;
    let row = pg
        .query_one(
            "SELECT count(*), count(execution_id), count(*) FILTER (WHERE status = 'completed')
             FROM report_data_weeks",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (5, 5, 5)
    );
    let executions: i64 = pg
        .query_one("SELECT count(*) FROM workflow_executions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(executions as usize, app.ledger().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_journal_state_never_overwrites_a_newer_row() {
    let app = spawn_app(SimConfig { ..quick_sim() }, &schedule(2, 0)).await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    // Rebuild the batch the journal would send for every row, as it is now.
    let journal = Journal::open(&app.journal_path()).unwrap();
    let mut warehouse = Warehouse::connect(&app.database_url, &TlsOptions::default())
        .await
        .unwrap();
    let pg = connect(&app.database_url).await;
    let newest = pg
        .query(
            "SELECT id, status, journal_seq FROM report_data_weeks ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let mut stale = newest_batch(&journal);
    for week in &mut stale.weeks {
        week.status = "pending".into();
        week.journal_seq -= 1;
    }
    warehouse.apply(&stale).await.unwrap();
    // Applying the same state twice changes nothing either.
    warehouse.apply(&newest_batch(&journal)).await.unwrap();
    let after = pg
        .query(
            "SELECT id, status, journal_seq FROM report_data_weeks ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let pairs = |rows: &[tokio_postgres::Row]| {
        rows.iter()
            .map(|r| {
                (
                    r.get::<_, uuid::Uuid>(0),
                    r.get::<_, String>(1),
                    r.get::<_, i64>(2),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(pairs(&after), pairs(&newest));
    assert!(
        pairs(&after)
            .iter()
            .all(|(_, status, _)| status == "completed")
    );
}

/// Every week's current state, by marking them all changed in the outbox.
fn newest_batch(journal: &Journal) -> chronicle::warehouse::rows::Batch {
    let connection = rusqlite::Connection::open(journal.path()).unwrap();
    connection
        .execute_batch(
            "INSERT INTO outbox (entity, entity_id, seq, queued_at)
             SELECT 'week', id, journal_seq, 'test' FROM weeks WHERE true
             ON CONFLICT DO NOTHING",
        )
        .unwrap();
    journal.pending(1000).unwrap().batch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_without_a_postgres_url_is_a_configuration_error() {
    let app = spawn_app(quick_sim(), &schedule(1, 0)).await;
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    app.set_config(&config.replace(&format!("url = \"{}\"", app.database_url), "url = \"\""));
    let output = app.chronicle(&["sync"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("postgres.url"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_locked_in_postgres_ends_the_backfills_sync_within_its_timeouts_and_a_later_sync_delivers()
 {
    let app = spawn_app(quick_sim(), &schedule(3, 0)).await;
    let mut config = std::fs::read_to_string(&app.config_path).unwrap();
    config = config.replace(
        "[postgres]\n",
        "[postgres]\nlock_timeout = \"300ms\"\nstatement_timeout = \"2s\"\n",
    );
    app.set_config(&config);
    let migrate = app.chronicle(&["migrate"]).await;
    assert_eq!(migrate.status.code(), Some(0), "{}", text(&migrate));

    // Another session holds the weeks table for the whole backfill.
    let mut holder = connect(&app.database_url).await;
    let lock = holder.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE report_data_weeks IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        app.chronicle(&["backfill", "weekly"]),
    )
    .await
    .expect("the backfill ends while the table is still locked");
    assert_eq!(
        output.status.code(),
        Some(0),
        "Postgres holding a lock is not a failure of the backfill: {}",
        text(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("sync failed") && stdout.contains("lock timeout"),
        "{}",
        text(&output)
    );
    let status = app.chronicle(&["status", "--json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(report["pending_sync"].as_i64().unwrap() > 0, "{report}");
    lock.rollback().await.unwrap();

    let synced = app.chronicle(&["sync"]).await;
    assert_eq!(synced.status.code(), Some(0), "{}", text(&synced));
    assert!(String::from_utf8_lossy(&synced.stdout).contains("0 updates pending sync"));
    assert_eq!(completed_weeks(&app.database_url).await, 3);
}
