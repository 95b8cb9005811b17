//! Test harness: `spawn_app` gives each test its own folder, journal,
//! Postgres database (on one throwaway cluster per test run) and AMC
//! simulator, and runs the real `chronicle` binary against them.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chronicle::amc::simulator::{self, LedgerEntry, RunningSimulator, SimConfig, Simulator};
pub use chronicle::throwaway::application::Application;
use chronicle::throwaway::{self, Cluster};
use tokio_postgres::NoTls;

/// One cluster for the whole test binary; every test gets its own database.
static CLUSTER: OnceLock<Mutex<Option<Cluster>>> = OnceLock::new();

extern "C" fn stop_cluster() {
    if let Some(cluster) = CLUSTER.get() {
        // Dropping stops the server and removes its files.
        drop(cluster.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
}

/// Connection URL of a database that accepts `CREATE DATABASE`: the one
/// `CHRONICLE_TEST_DATABASE_URL` names, or the shared throwaway cluster's.
fn admin_url() -> String {
    if let Ok(url) = std::env::var("CHRONICLE_TEST_DATABASE_URL") {
        return url;
    }
    let cluster = CLUSTER.get_or_init(|| {
        let cluster = Cluster::start().unwrap_or_else(|e| panic!("{e}"));
        // Statics are never dropped: stop the server when the tests exit.
        unsafe { libc::atexit(stop_cluster) };
        Mutex::new(Some(cluster))
    });
    let cluster = cluster.lock().unwrap_or_else(|p| p.into_inner());
    cluster
        .as_ref()
        .expect("the cluster lives until the tests exit")
        .url("postgres")
}

/// Creates a fresh database and returns its URL.
pub async fn fresh_database(admin: &str) -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(admin, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to test Postgres at {admin}: {e}"));
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("admin URL {admin} has no database part"),
    }
}

/// How many weeks Postgres at `url` holds as completed.
pub async fn completed_weeks(url: &str) -> i64 {
    connect(url)
        .await
        .query_one(
            "SELECT count(*) FROM report_data_weeks WHERE status = 'completed'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

pub struct TestApp {
    /// Holds the folder alive for the test's duration.
    pub dir: tempfile::TempDir,
    pub sim: RunningSimulator,
    pub config_path: PathBuf,
    pub database_url: String,
}

/// A schedule body with `backfill_weeks` weeks, named by its file `weekly`.
pub fn schedule(backfill_weeks: u32, max_retries: u32) -> String {
    format!(
        r#"cron = "0 0 6 * * Mon"
instance_id = "amctest01"
workflow_id = "campaign_performance"
week_start = "monday"
backfill_weeks = {backfill_weeks}
max_retries = {max_retries}

[parameters]
region = "eu"
"#
    )
}

pub fn quick_sim() -> SimConfig {
    SimConfig {
        execution_duration: Duration::from_millis(100),
        seed: 7,
        ..SimConfig::default()
    }
}

pub async fn spawn_app(sim: SimConfig, schedule_body: &str) -> TestApp {
    let database_url = fresh_database(&admin_url()).await;
    spawn_app_with_database(sim, schedule_body, database_url).await
}

pub async fn spawn_app_with_database(
    sim: SimConfig,
    schedule_body: &str,
    database_url: String,
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("schedules")).unwrap();
    std::fs::write(dir.path().join("schedules/weekly.toml"), schedule_body).unwrap();
    let sim = simulator::spawn(Simulator::new(sim)).await.unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config(&sim, &database_url)).unwrap();
    TestApp {
        dir,
        sim,
        config_path,
        database_url,
    }
}

pub fn config(sim: &RunningSimulator, database_url: &str) -> String {
    throwaway::ConfigFile::for_simulator(sim)
        .postgres(database_url)
        .section("[reconciler]\ninterval = \"200ms\"\nbatch_size = 7")
        .render()
}

impl TestApp {
    pub fn journal_path(&self) -> PathBuf {
        self.dir.path().join("journal.db")
    }

    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.sim.simulator.ledger()
    }

    /// Runs the real binary with this app's config and waits for it.
    pub async fn chronicle(&self, args: &[&str]) -> Output {
        run_chronicle(&self.config_path, args).await
    }

    pub fn set_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).unwrap();
    }
}

pub fn command(config: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command.arg("--config").arg(config).args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("CHRONICLE_") {
            command.env_remove(key);
        }
    }
    command.kill_on_drop(true);
    command
}

pub async fn run_chronicle(config: &Path, args: &[&str]) -> Output {
    command(config, args).output().await.unwrap()
}

pub fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Polls `check` until it holds or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh database with Supabase's roles and grants (and, with
/// `application`, the application's schema and its user, instance and
/// workflow rows for the test schedule).
pub async fn supabase_database(application: bool) -> (String, Option<Application>) {
    // Roles belong to the whole cluster: made once, by one test.
    static ROLES: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ROLES
        .get_or_init(|| async {
            connect(&admin_url())
                .await
                .batch_execute(throwaway::application::ROLES)
                .await
                .unwrap();
        })
        .await;
    let url = fresh_database(&admin_url()).await;
    let seeded = throwaway::application::prepare(&connect(&url).await, application)
        .await
        .unwrap_or_else(|e| panic!("cannot prepare a Supabase-like database: {e}"));
    (url, seeded)
}

/// `spawn_app` on a database holding the application's schema and rows.
pub async fn spawn_app_on_application(
    sim: SimConfig,
    schedule_body: &str,
) -> (TestApp, Application) {
    let (url, application) = supabase_database(true).await;
    let app = spawn_app_with_database(sim, schedule_body, url).await;
    (app, application.expect("asked for the application's rows"))
}
