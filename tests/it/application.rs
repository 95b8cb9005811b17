//! chronicle on the application's own database (../shared/seed-app): its
//! uuid references, its words, its collections, its dashboards' results,
//! its old rows, and Supabase's `anon` role kept out of what chronicle
//! adds.

use chrono::{Days, NaiveDate, Utc, Weekday};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::helpers::{
    Application, connect, quick_sim, schedule, spawn_app, spawn_app_on_application,
    spawn_app_with_database, supabase_database, text,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_on_the_applications_database_lands_every_week_in_its_words_with_results() {
    let (app, application) = spawn_app_on_application(quick_sim(), &schedule(4, 0)).await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("4 weeks completed"),
        "{}",
        text(&output)
    );

    let pg = connect(&app.database_url).await;
    let weeks = pg
        .query(
            "SELECT w.status, w.amc_execution_id, w.record_count, w.data_checksum,
                    w.summary_stats, w.execution_date IS NOT NULL,
                    w.workflow_execution_id = w.execution_id, w.week_end_date - w.week_start_date,
                    e.status, e.execution_id, e.workflow_id, e.amc_execution_id, e.row_count,
                    e.result_columns, e.result_rows, e.result_total_rows, e.result_sample_size,
                    e.execution_mode, e.triggered_by, e.progress, e.instance_id,
                    e.target_instance_id, e.started_at IS NOT NULL, e.completed_at IS NOT NULL
             FROM report_data_weeks w JOIN workflow_executions e ON e.id = w.execution_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(weeks.len(), 4, "every week points at its execution row");
    for week in &weeks {
        assert_eq!(week.get::<_, &str>(0), "completed");
        assert_eq!(
            week.get::<_, &str>(8),
            "completed",
            "the application's word"
        );
        let amc_id: String = week.get(1);
        assert_eq!(week.get::<_, String>(11), amc_id);
        let csv = app.sim.simulator.result_csv(&amc_id).expect("AMC made it");
        let records = app.sim.simulator.result_records(&amc_id).unwrap() as i32;
        assert_eq!(week.get::<_, i32>(2), records);
        assert_eq!(week.get::<_, i32>(12), records);
        assert_eq!(week.get::<_, String>(3), hex::encode(Sha256::digest(&csv)));
        let stats: serde_json::Value = week.get(4);
        assert!(
            stats["total_impressions"].is_number() && stats["avg_clicks"].is_number(),
            "summary_stats for the dashboards: {stats}"
        );
        assert!(week.get::<_, bool>(5), "execution_date is when it ran");
        assert!(
            week.get::<_, bool>(6),
            "workflow_execution_id follows execution_id"
        );
        assert_eq!(week.get::<_, i32>(7), 6, "week_end_date is start + 6");
        assert!(week.get::<_, String>(9).starts_with("exec_"));
        assert_eq!(week.get::<_, Uuid>(10), application.workflow_uuid);
        let columns: serde_json::Value = week.get(13);
        assert_eq!(columns[0]["name"], "week_start");
        let rows: serde_json::Value = week.get(14);
        assert_eq!(rows.as_array().unwrap().len() as i32, records.min(10_000));
        assert_eq!(week.get::<_, i32>(15), records);
        assert_eq!(week.get::<_, i32>(16), records.min(10_000));
        assert_eq!(week.get::<_, &str>(17), "saved_workflow");
        assert_eq!(week.get::<_, &str>(18), "collection");
        assert_eq!(week.get::<_, i32>(19), 100);
        assert_eq!(week.get::<_, &str>(20), "amctest01");
        assert_eq!(week.get::<_, Uuid>(21), application.instance_uuid);
        assert!(week.get::<_, bool>(22) && week.get::<_, bool>(23));
    }
    let collection = pg
        .query_one(
            "SELECT collection_id, workflow_id, instance_id, user_id, collection_type,
                    target_weeks, weeks_completed, progress_percentage, status
             FROM report_data_collections",
            &[],
        )
        .await
        .unwrap();
    assert!(collection.get::<_, String>(0).starts_with("coll_"));
    assert_eq!(collection.get::<_, Uuid>(1), application.workflow_uuid);
    assert_eq!(collection.get::<_, Uuid>(2), application.instance_uuid);
    assert_eq!(collection.get::<_, Uuid>(3), application.user_id);
    assert_eq!(collection.get::<_, &str>(4), "backfill");
    assert_eq!(
        (
            collection.get::<_, i32>(5),
            collection.get::<_, i32>(6),
            collection.get::<_, i32>(7)
        ),
        (4, 4, 100)
    );
    assert_eq!(collection.get::<_, &str>(8), "completed");
    // The application's export queue hears of every completed execution
    // that has rows, for the workflow's owner.
    let queued: i64 = pg
        .query_one(
            "SELECT count(*) FROM snowflake_sync_queue WHERE user_id = $1",
            &[&application.user_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 4);

    let quarantine = app.chronicle(&["quarantine", "--json"]).await;
    assert_eq!(
        String::from_utf8_lossy(&quarantine.stdout).trim(),
        "[]",
        "{}",
        text(&quarantine)
    );
    let verify = app.chronicle(&["verify"]).await;
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let audit = app.chronicle(&["audit"]).await;
    assert_eq!(audit.status.code(), Some(0), "{}", text(&audit));
}

/// The `n` most recent weeks the test schedule covers today, oldest first.
fn due_weeks(n: u64) -> Vec<NaiveDate> {
    let latest = chronicle::schedule::week::latest_due(Utc::now().date_naive(), Weekday::Mon, 14);
    (0..n)
        .rev()
        .map(|back| latest - Days::new(7 * back))
        .collect()
}

/// An application collection of the test schedule's workflow with one
/// week per `(start, status)`; a completed week has its execution row.
async fn application_collection(
    url: &str,
    application: &Application,
    weeks: &[(NaiveDate, &str)],
) -> Uuid {
    let pg = connect(url).await;
    let start = weeks[0].0;
    let end = weeks[weeks.len() - 1].0 + Days::new(6);
    let collection: Uuid = pg
        .query_one(
            "INSERT INTO report_data_collections (collection_id, workflow_id, instance_id,
                 user_id, collection_type, target_weeks, start_date, end_date, status,
                 weeks_completed, configuration)
             VALUES ('coll_4a1b2c3d', $1, $2, $3, 'backfill', $4, $5, $6, 'running', 1,
                     '{\"workflow_name\": \"Campaign performance\"}')
             RETURNING id",
            &[
                &application.workflow_uuid,
                &application.instance_uuid,
                &application.user_id,
                &(weeks.len() as i32),
                &start,
                &end,
            ],
        )
        .await
        .unwrap()
        .get(0);
    for (i, (start, status)) in weeks.iter().enumerate() {
        let execution: Option<Uuid> = if *status == "completed" {
            Some(
                pg.query_one(
                    "INSERT INTO workflow_executions (execution_id, workflow_id, status,
                         row_count, amc_execution_id, execution_mode, triggered_by,
                         started_at, completed_at, result_total_rows)
                     VALUES ($1, $2, 'completed', 17, $3, 'saved_workflow', 'collection',
                             now() - interval '2 days', now() - interval '2 days', 17)
                     RETURNING id",
                    &[
                        &format!("exec_0000000{i}"),
                        &application.workflow_uuid,
                        &format!("app-amc-{i}"),
                    ],
                )
                .await
                .unwrap()
                .get(0),
            )
        } else {
            None
        };
        pg.execute(
            "INSERT INTO report_data_weeks (collection_id, week_start_date, week_end_date,
                 status, execution_id, amc_execution_id, record_count, data_checksum,
                 error_message)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &collection,
                start,
                &(*start + Days::new(6)),
                status,
                &execution,
                &execution.map(|_| format!("app-amc-{i}")),
                &execution.map(|_| 17),
                &execution.map(|_| "feedbeef".to_owned()),
                &(*status == "failed").then(|| "AMC said no".to_owned()),
            ],
        )
        .await
        .unwrap();
    }
    collection
}

/// Every column of these weeks' rows and their executions', as text.
async fn rows_of(url: &str, weeks: &[NaiveDate]) -> Vec<String> {
    let pg = connect(url).await;
    pg.query(
        "SELECT row_to_json(w)::text || row_to_json(e)::text
         FROM report_data_weeks w JOIN workflow_executions e ON e.id = w.execution_id
         WHERE w.week_start_date = ANY($1) ORDER BY w.week_start_date",
        &[&weeks],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_attaches_to_the_applications_collection_and_submits_only_its_unfinished_weeks()
{
    let (url, application) = supabase_database(true).await;
    let application = application.unwrap();
    let weeks = due_weeks(4);
    let collection = application_collection(
        &url,
        &application,
        &[
            (weeks[0], "completed"),
            (weeks[1], "failed"),
            (weeks[2], "pending"),
            (weeks[3], "completed"),
        ],
    )
    .await;
    let app = spawn_app_with_database(quick_sim(), &schedule(4, 0), url.clone()).await;
    // What the application wrote, once chronicle's columns exist.
    let migrate = app.chronicle(&["migrate"]).await;
    assert_eq!(migrate.status.code(), Some(0), "{}", text(&migrate));
    let completed = [weeks[0], weeks[3]];
    let before = rows_of(&url, &completed).await;
    assert_eq!(before.len(), 2);

    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("attached to the application's collection coll_4a1b2c3d")
            && stdout.contains("2 completed weeks imported"),
        "{}",
        text(&output)
    );
    let submitted: Vec<String> = app
        .ledger()
        .iter()
        .map(|e| e.request.time_window_start.clone())
        .collect();
    let mut expected: Vec<String> = [weeks[1], weeks[2]]
        .iter()
        .map(|w| format!("{w}T00:00:00"))
        .collect();
    let mut sorted = submitted.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected, "only the failed and pending weeks ran");

    let pg = connect(&url).await;
    let collections: i64 = pg
        .query_one("SELECT count(*) FROM report_data_collections", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        collections, 1,
        "no second collection beside the application's"
    );
    let (count, done): (i64, i64) = {
        let row = pg
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE status = 'completed')
                 FROM report_data_weeks WHERE collection_id = $1",
                &[&collection],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((count, done), (4, 4));
    assert_eq!(
        rows_of(&url, &completed).await,
        before,
        "the application's completed rows stay byte for byte"
    );
    let readable: String = pg
        .query_one(
            "SELECT collection_id FROM report_data_collections WHERE id = $1",
            &[&collection],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(readable, "coll_4a1b2c3d");

    let lineage = app.chronicle(&["lineage", &weeks[0].to_string()]).await;
    assert!(
        String::from_utf8_lossy(&lineage.stdout).contains("week.imported"),
        "{}",
        text(&lineage)
    );
    let again = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(app.ledger().len(), submitted.len(), "nothing is paid twice");
    for check in [&["verify"][..], &["audit"][..]] {
        let output = app.chronicle(check).await;
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_the_application_does_not_have_stops_the_backfill_before_any_amc_call() {
    let (app, _) = spawn_app_on_application(
        quick_sim(),
        &schedule(3, 0).replace("campaign_performance", "not_in_the_app"),
    )
    .await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("workflows") && stderr.contains("not_in_the_app"),
        "the error names the table and the value: {stderr}"
    );
    assert!(
        app.sim.simulator.requests().is_empty(),
        "nothing was sent to AMC"
    );
    let migrate = app.chronicle(&["migrate"]).await;
    assert_eq!(migrate.status.code(), Some(2), "{}", text(&migrate));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_rows_that_repeat_an_amc_execution_id_do_not_fail_migrate() {
    let (url, application) = supabase_database(true).await;
    let application = application.unwrap();
    let pg = connect(&url).await;
    for readable in ["exec_aaaaaaaa", "exec_bbbbbbbb"] {
        pg.execute(
            "INSERT INTO workflow_executions (execution_id, workflow_id, status, amc_execution_id)
             VALUES ($1, $2, 'completed', 'repeated-amc-id')",
            &[&readable, &application.workflow_uuid],
        )
        .await
        .unwrap();
    }
    let app = spawn_app_with_database(quick_sim(), &schedule(2, 0), url).await;
    let migrate = app.chronicle(&["migrate"]).await;
    assert_eq!(migrate.status.code(), Some(0), "{}", text(&migrate));
    let backfill = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(backfill.status.code(), Some(0), "{}", text(&backfill));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_postgres_refuses_says_postgres_s_own_reason() {
    let app = spawn_app(quick_sim(), &schedule(2, 0)).await;
    let pg = connect(&app.database_url).await;
    pg.batch_execute("CREATE VIEW report_data_weeks AS SELECT 1 AS id")
        .await
        .unwrap();
    let migrate = app.chronicle(&["migrate"]).await;
    assert_eq!(migrate.status.code(), Some(1), "{}", text(&migrate));
    let stderr = String::from_utf8_lossy(&migrate.stderr);
    assert!(
        stderr.contains("error applying migration V1__tracking")
            && stderr.contains("relation \"report_data_weeks\"")
            && stderr.contains("not supported for views"),
        "{stderr}"
    );
}

/// What `anon` can do with the rows and tables chronicle added: nothing.
async fn assert_anon_is_kept_out(url: &str) {
    let pg = connect(url).await;
    let weeks: i64 = pg
        .query_one("SELECT count(*) FROM report_data_weeks", &[])
        .await
        .unwrap()
        .get(0);
    assert!(weeks > 0);
    pg.batch_execute("SET ROLE anon").await.unwrap();
    for table in ["chronicle.chain_heads", "chronicle.schema_history"] {
        let read = pg
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await;
        assert!(read.is_err(), "anon read {table}");
        let delete = pg.execute(&format!("DELETE FROM {table}"), &[]).await;
        assert!(delete.is_err(), "anon deleted from {table}");
    }
    for table in [
        "report_data_collections",
        "report_data_weeks",
        "workflow_executions",
    ] {
        let seen: i64 = pg
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(seen, 0, "anon sees rows of {table}");
        let deleted = pg.execute(&format!("DELETE FROM {table}"), &[]).await;
        assert!(
            matches!(deleted, Ok(0) | Err(_)),
            "anon deleted rows of {table}"
        );
    }
    pg.batch_execute("RESET ROLE").await.unwrap();
    let after: i64 = pg
        .query_one("SELECT count(*) FROM report_data_weeks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, weeks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anon_role_can_neither_read_nor_change_what_chronicle_adds_on_either_database() {
    for application in [false, true] {
        let (url, _) = supabase_database(application).await;
        let app = spawn_app_with_database(quick_sim(), &schedule(2, 0), url.clone()).await;
        let output = app.chronicle(&["backfill", "weekly"]).await;
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        assert_anon_is_kept_out(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_named_in_the_schedule_that_postgres_does_not_hold_is_refused() {
    let (app, _) = spawn_app_on_application(
        quick_sim(),
        &format!("collection_id = \"coll_00000000\"\n{}", schedule(2, 0)),
    )
    .await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("coll_00000000"),
        "{}",
        text(&output)
    );
    assert!(app.sim.simulator.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_attaches_to_the_applications_collection_before_its_first_run() {
    let (url, application) = supabase_database(true).await;
    let application = application.unwrap();
    let weeks = due_weeks(4);
    let collection = application_collection(
        &url,
        &application,
        &[
            (weeks[0], "completed"),
            (weeks[1], "pending"),
            (weeks[2], "completed"),
            (weeks[3], "failed"),
        ],
    )
    .await;
    let every_second = schedule(4, 0).replace("0 0 6 * * Mon", "* * * * * *");
    let app = spawn_app_with_database(quick_sim(), &every_second, url.clone()).await;
    let (mut daemon, lines) = crate::daemon::start(&app, &[]);
    let pg = connect(&url).await;
    crate::helpers::eventually(
        "the application's collection to be completed by the daemon",
        std::time::Duration::from_secs(60),
        || async {
            pg.query_one(
                "SELECT count(*) FROM report_data_weeks WHERE collection_id = $1
                   AND status = 'completed'",
                &[&collection],
            )
            .await
            .is_ok_and(|r| r.get::<_, i64>(0) == 4)
        },
    )
    .await;
    daemon.kill().await.unwrap();
    assert_eq!(
        app.ledger().len(),
        2,
        "only the pending and failed weeks were submitted: {}",
        lines.lock().unwrap().join("\n")
    );
    let collections: i64 = pg
        .query_one("SELECT count(*) FROM report_data_collections", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(collections, 1);
}
