//! The reconciler against Supabase-like conditions: refused rows, hand
//! edits, a server that goes away mid-run, and a transaction-mode pooler.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use chronicle::throwaway::Cluster;
use chrono::{Days, Utc, Weekday};

use crate::helpers::{
    command, connect, eventually, fresh_database, quick_sim, schedule, spawn_app,
    spawn_app_with_database, text,
};

async fn json(app: &crate::helpers::TestApp, args: &[&str]) -> serde_json::Value {
    let output = app.chronicle(args).await;
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", text(&output)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_is_quarantined_while_the_others_land_and_retry_requeues_it() {
    let app = spawn_app(quick_sim(), &schedule(4, 0)).await;
    let migrated = app.chronicle(&["migrate"]).await;
    assert_eq!(migrated.status.code(), Some(0), "{}", text(&migrated));
    let latest = chronicle::schedule::week::latest_due(Utc::now().date_naive(), Weekday::Mon, 14);
    let refused_week = latest - Days::new(14);
    let pg = connect(&app.database_url).await;
    pg.batch_execute(&format!(
        "ALTER TABLE report_data_weeks ADD CONSTRAINT not_that_week
           CHECK (week_start_date <> '{refused_week}')"
    ))
    .await
    .unwrap();

    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("refused 1 rows"),
        "{}",
        text(&output)
    );
    let landed: Vec<chrono::NaiveDate> = pg
        .query("SELECT week_start_date FROM report_data_weeks", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(landed.len(), 3, "the other weeks landed");
    assert!(!landed.contains(&refused_week));

    let quarantined = json(&app, &["quarantine", "--json"]).await;
    assert_eq!(quarantined.as_array().unwrap().len(), 1, "{quarantined}");
    assert_eq!(quarantined[0]["entity"], "week");
    assert!(
        quarantined[0]["error"]
            .as_str()
            .unwrap()
            .contains("not_that_week")
    );
    let status = json(&app, &["status", "--json"]).await;
    assert_eq!(status["quarantined"], 1);
    // Raised with the quarantine, in its transaction: never unannounced.
    let alerts = json(&app, &["alerts", "--json"]).await;
    let quarantine_alerts: Vec<_> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "row_quarantined")
        .collect();
    assert_eq!(quarantine_alerts.len(), 1, "{alerts}");
    assert_eq!(quarantine_alerts[0]["subject"], quarantined[0]["entity_id"]);
    assert!(
        quarantine_alerts[0]["summary"]
            .as_str()
            .unwrap()
            .contains("not_that_week"),
        "{alerts}"
    );

    pg.batch_execute("ALTER TABLE report_data_weeks DROP CONSTRAINT not_that_week")
        .await
        .unwrap();
    let retry = app.chronicle(&["quarantine", "retry"]).await;
    assert_eq!(retry.status.code(), Some(0), "{}", text(&retry));
    let sync = app.chronicle(&["sync"]).await;
    assert_eq!(sync.status.code(), Some(0), "{}", text(&sync));
    let weeks: i64 = pg
        .query_one("SELECT count(*) FROM report_data_weeks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(weeks, 4);
    assert_eq!(
        json(&app, &["quarantine", "--json"]).await,
        serde_json::json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_rows_changed_by_hand_and_repair_mends_them() {
    let app = spawn_app(quick_sim(), &schedule(3, 0)).await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let clean = app.chronicle(&["verify"]).await;
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    assert!(String::from_utf8_lossy(&clean.stdout).contains("100.0%"));

    let pg = connect(&app.database_url).await;
    let edited: uuid::Uuid = pg
        .query_one(
            "UPDATE report_data_weeks SET record_count = 0
             WHERE id = (SELECT min(id::text)::uuid FROM report_data_weeks) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let deleted: uuid::Uuid = pg
        .query_one(
            "DELETE FROM report_data_weeks
             WHERE id = (SELECT max(id::text)::uuid FROM report_data_weeks) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let drift = app.chronicle(&["verify", "--json"]).await;
    assert_eq!(drift.status.code(), Some(1), "{}", text(&drift));
    let report: serde_json::Value = serde_json::from_slice(&drift.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let about = |id: uuid::Uuid| {
        findings
            .iter()
            .find(|f| f["id"] == id.to_string())
            .unwrap_or_else(|| panic!("{id} not reported: {report}"))
    };
    assert_eq!(about(edited)["problem"], "differs");
    assert!(
        about(edited)["detail"]
            .as_str()
            .unwrap()
            .contains("record_count")
    );
    assert_eq!(about(deleted)["problem"], "missing in postgres");
    assert_eq!(findings.len(), 2, "{report}");

    let repair = app.chronicle(&["verify", "--repair"]).await;
    assert_eq!(repair.status.code(), Some(0), "{}", text(&repair));
    let again = app.chronicle(&["verify"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_run_of_the_daemon_and_started_again_loses_nothing() {
    let mut cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let url = fresh_database(&cluster.url("postgres")).await;
    let sim = chronicle::amc::simulator::SimConfig {
        execution_duration: Duration::from_millis(400),
        ..quick_sim()
    };
    let body = schedule(8, 0).replace("0 0 6 * * Mon", "* * * * * *");
    let app = spawn_app_with_database(sim, &body, url.clone()).await;
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    app.set_config(&config.replace(
        "poll_interval = \"20ms\"",
        "poll_interval = \"20ms\"\nmax_concurrent_executions = 2",
    ));
    let mut daemon = command(&app.config_path, &["run"]).spawn().unwrap();
    let pg = connect(&url).await;
    eventually("a first synced week", Duration::from_secs(30), || async {
        pg.query_one(
            "SELECT count(*) FROM report_data_weeks WHERE status = 'completed'",
            &[],
        )
        .await
        .is_ok_and(|r| r.get::<_, i64>(0) >= 1)
    })
    .await;
    cluster.stop().unwrap();

    eventually(
        "every week completed in the journal",
        Duration::from_secs(60),
        || async {
            let status = json(&app, &["status", "--json"]).await;
            status["collections"][0]["weeks_by_status"]["completed"] == 8
        },
    )
    .await;
    let status = json(&app, &["status", "--json"]).await;
    assert!(status["pending_sync"].as_i64().unwrap() > 0, "{status}");
    cluster.restart().unwrap();

    let pg = connect(&url).await;
    eventually("Postgres caught up", Duration::from_secs(60), || async {
        pg.query_one(
            "SELECT count(*) FROM report_data_weeks
             WHERE status = 'completed' AND execution_id IS NOT NULL",
            &[],
        )
        .await
        .is_ok_and(|r| r.get::<_, i64>(0) == 8)
    })
    .await;
    unsafe { libc::kill(daemon.id().unwrap() as i32, libc::SIGTERM) };
    let exit = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("stops after SIGTERM")
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    let verify = app.chronicle(&["verify"]).await;
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}

/// pgbouncer in transaction mode in front of `port`, as Supabase's pooler on
/// 6543 is: consecutive transactions may land on different server sessions.
struct Pooler {
    child: Child,
    port: u16,
    /// Holds the config folder alive while pgbouncer runs.
    _dir: tempfile::TempDir,
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pgbouncer(server_port: u16) -> Pooler {
    let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("pgbouncer not found: run the tests with `.ci/run`, which installs it, or install the Debian package `pgbouncer` (apt-get install pgbouncer)");
    let dir = tempfile::Builder::new()
        .prefix("chronicle-pgb-")
        .tempdir_in("/tmp")
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(dir.path().join("users.txt"), "\"postgres\" \"\"\n").unwrap();
    std::fs::write(
        dir.path().join("pgbouncer.ini"),
        format!(
            "[databases]\n* = host=127.0.0.1 port={server_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
             default_pool_size = 4\nlogfile = {log}\n",
            users = dir.path().join("users.txt").display(),
            log = dir.path().join("pgbouncer.log").display(),
        ),
    )
    .unwrap();
    let root = unsafe { libc::geteuid() } == 0;
    let mut command = if root {
        // pgbouncer refuses to run as root, like postgres.
        let status = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        // `-u` drops privileges in pgbouncer's own process, so killing the
        // child stops the pooler itself (a `runuser` wrapper would orphan it).
        let mut c = Command::new(binary);
        c.args(["-u", "postgres"]);
        c
    } else {
        Command::new(binary)
    };
    let child = command
        .arg(dir.path().join("pgbouncer.ini"))
        .spawn()
        .unwrap();
    Pooler {
        child,
        port,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_works_through_a_transaction_mode_pooler() {
    let app = spawn_app(quick_sim(), &schedule(12, 0)).await;
    let (base, database) = app.database_url.rsplit_once('/').unwrap();
    let server_port: u16 = base.rsplit_once(':').unwrap().1.parse().unwrap();
    let pooler = pgbouncer(server_port);
    let pooled = format!("postgres://postgres@127.0.0.1:{}/{database}", pooler.port);
    eventually(
        "pgbouncer to accept connections",
        Duration::from_secs(20),
        || async {
            tokio_postgres::connect(&pooled, tokio_postgres::NoTls)
                .await
                .is_ok()
        },
    )
    .await;
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    app.set_config(&config.replace(&app.database_url, &pooled));

    // batch_size 7 in the test config: many transactions, spread over the
    // pool's server sessions.
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("0 updates pending sync"),
        "{}",
        text(&output)
    );
    let verify = app.chronicle(&["verify"]).await;
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}
