//! Test harness: `spawn_app` gives each test its own folder, journal,
//! Postgres database (on one throwaway cluster per test run) and AMC
//! simulator, and runs the real `chronicle` binary against them.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chronicle::amc::simulator::{self, LedgerEntry, RunningSimulator, SimConfig, Simulator};
use chronicle::throwaway::Cluster;
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
    format!(
        r#"[journal]
path = "journal.db"

[schedules]
dir = "schedules"

[amc]
base_url = "{}"
token_url = "{}"
client_id = "sim-client"
client_secret = "sim-secret"
refresh_token = "sim-refresh"
advertiser_id = "ADV1"
marketplace_id = "ATVPDKIKX0DER"
poll_interval = "20ms"

[postgres]
url = "{database_url}"

[reconciler]
interval = "200ms"
batch_size = 7
"#,
        sim.base_url, sim.token_url
    )
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

/// The application's production schema (../shared/seed-app/schema.sql),
/// read from where the project's shared folder keeps it.
pub fn application_schema() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/seed-app/schema.sql");
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the application's schema at {path}: {e}"))
}

/// The rows of the application every test on its database needs: the
/// owner, the AMC account and instance, and the saved workflow the test
/// schedule names.
#[derive(Debug, Clone)]
pub struct Application {
    pub user_id: uuid::Uuid,
    pub instance_uuid: uuid::Uuid,
    pub workflow_uuid: uuid::Uuid,
}

/// Supabase's roles and default grants, as a Supabase project has them:
/// `anon`, `authenticated` and `service_role` may use `public`, and every
/// table made there is theirs too.
const SUPABASE_ROLES: &str = "
DO $$ BEGIN CREATE ROLE anon NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE authenticated NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE service_role NOLOGIN BYPASSRLS; EXCEPTION WHEN duplicate_object THEN NULL; END $$;";

const SUPABASE_GRANTS: &str = "
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;";

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
                .batch_execute(SUPABASE_ROLES)
                .await
                .unwrap();
        })
        .await;
    let url = fresh_database(&admin_url()).await;
    let pg = connect(&url).await;
    pg.batch_execute(SUPABASE_GRANTS).await.unwrap();
    if !application {
        return (url, None);
    }
    pg.batch_execute(&application_schema())
        .await
        .unwrap_or_else(|e| panic!("the application's schema does not load: {e:?}"));
    // Tables the schema made existed before the default grants applied.
    pg.batch_execute(
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role",
    )
    .await
    .unwrap();
    let user_id: uuid::Uuid = pg
        .query_one(
            "INSERT INTO users (email, name) VALUES ('analyst@example.com', 'Analyst') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let account: uuid::Uuid = pg
        .query_one(
            "INSERT INTO amc_accounts (account_id, account_name, marketplace_id, region, user_id)
             VALUES ('ENTITY1', 'Brand', 'ATVPDKIKX0DER', 'na', $1) RETURNING id",
            &[&user_id],
        )
        .await
        .unwrap()
        .get(0);
    let instance_uuid: uuid::Uuid = pg
        .query_one(
            "INSERT INTO amc_instances (instance_id, instance_name, region, account_id)
             VALUES ('amctest01', 'Test instance', 'na', $1) RETURNING id",
            &[&account],
        )
        .await
        .unwrap()
        .get(0);
    let workflow_uuid: uuid::Uuid = pg
        .query_one(
            "INSERT INTO workflows (workflow_id, name, instance_id, sql_query, user_id, amc_workflow_id)
             VALUES ('wf_campaign', 'Campaign performance', $1, 'SELECT 1', $2,
                     'campaign_performance')
             RETURNING id",
            &[&instance_uuid, &user_id],
        )
        .await
        .unwrap()
        .get(0);
    (
        url,
        Some(Application {
            user_id,
            instance_uuid,
            workflow_uuid,
        }),
    )
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
