//! The real binary against a simulator that enforces AMC's wire formats
//! (issue 13): lost create answers adopted with the execution of the
//! attempt's own request, also with several schedules and journals on one
//! workflow and instance; a listing that keeps failing or loops leaves the
//! attempt open and visible; empty download lists, every result form with
//! its exact count and checksum; hostile headers and ids. Journal only.

use chronicle::throwaway::ConfigFile;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chronicle::amc::simulator::{self, Faults, RunningSimulator, SimConfig, Simulator};
use sha2::{Digest, Sha256};

use crate::helpers::{run_chronicle, text};

const INSTANCE: &str = "amcstrict1";

/// A week's status, AMC id, rows and checksum, by its current attempt.
type WeekState = (String, Option<String>, Option<i64>, Option<String>);

/// One chronicle folder (config, journal, one schedule) against `sim`.
struct Journaled {
    dir: tempfile::TempDir,
    config_path: PathBuf,
}

/// A schedule of `weeks` weeks on workflow `campaign_performance` of the
/// shared instance, in `zone` with `region` as its one parameter.
fn schedule(weeks: u32, zone: &str, region: &str) -> String {
    format!(
        r#"cron = "0 0 6 * * Mon"
instance_id = "{INSTANCE}"
workflow_id = "campaign_performance"
week_start = "monday"
timezone = "{zone}"
backfill_weeks = {weeks}
max_retries = 0

[parameters]
region = "{region}"
"#
    )
}

fn journaled(sim: &RunningSimulator, schedule_body: &str, amc_extra: &str) -> Journaled {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("schedules")).unwrap();
    std::fs::write(dir.path().join("schedules/weekly.toml"), schedule_body).unwrap();
    let config_path = ConfigFile::for_simulator(sim)
        .amc("retry_min_delay = \"10ms\"\nretry_max_delay = \"50ms\"\nretry_attempts = 3")
        .amc(amc_extra)
        .write(dir.path())
        .unwrap();
    Journaled { dir, config_path }
}

impl Journaled {
    async fn backfill(&self) -> std::process::Output {
        run_chronicle(&self.config_path, &["backfill", "weekly"]).await
    }

    fn journal(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("journal.db")).unwrap()
    }

    /// Week start -> (status, AMC id, rows, checksum) of its current attempt.
    fn weeks(&self) -> BTreeMap<String, WeekState> {
        let journal = self.journal();
        let mut statement = journal
            .prepare(
                "SELECT w.week_start, w.status, a.amc_execution_id, w.record_count, w.data_checksum
                 FROM weeks w LEFT JOIN attempts a ON a.id = w.attempt_id",
            )
            .unwrap();
        statement
            .query_map([], |row| {
                Ok((
                    row.get(0)?,
                    (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?),
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn count(&self, sql: &str) -> i64 {
        self.journal().query_row(sql, [], |row| row.get(0)).unwrap()
    }

    fn states(&self) -> Vec<String> {
        let journal = self.journal();
        let mut statement = journal
            .prepare("SELECT state FROM attempts ORDER BY created_at")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

async fn serve(config: SimConfig) -> RunningSimulator {
    simulator::spawn(Simulator::new(config)).await.unwrap()
}

fn quick() -> SimConfig {
    SimConfig {
        execution_duration: Duration::from_millis(100),
        seed: 13,
        ..SimConfig::default()
    }
}

/// Every week completed, each holding an execution AMC created from exactly
/// this schedule's request (zone and parameters included), with the result
/// AMC holds for it; returns the AMC ids.
fn assert_own_executions(
    sim: &RunningSimulator,
    app: &Journaled,
    zone: &str,
    region: &str,
) -> Vec<String> {
    let ledger = sim.simulator.ledger();
    let weeks = app.weeks();
    assert!(!weeks.is_empty());
    let mut ids = Vec::new();
    for (week, (status, id, rows, checksum)) in weeks {
        assert_eq!(status, "completed", "week {week}");
        let id = id.expect("an AMC id");
        let entry = ledger
            .iter()
            .find(|e| e.execution.workflow_execution_id == id)
            .expect("AMC created it");
        assert_eq!(entry.instance_id, INSTANCE);
        assert_eq!(entry.request.time_window_start, format!("{week}T00:00:00"));
        assert_eq!(
            entry.request.time_window_time_zone, zone,
            "week {week} holds another's execution"
        );
        assert_eq!(
            entry.request.parameter_values["region"], region,
            "week {week} holds another's execution"
        );
        let csv = sim.simulator.result_csv(&id).unwrap();
        assert_eq!(
            checksum.as_deref(),
            Some(hex::encode(Sha256::digest(&csv)).as_str())
        );
        assert_eq!(rows, sim.simulator.result_records(&id).map(|n| n as i64));
        ids.push(id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_differing_in_zone_or_parameters_adopt_only_their_own_executions_across_journals()
{
    // Every create answer is lost: each week is settled by adoption alone.
    let sim = serve(SimConfig {
        drop_create_rate: 1.0,
        concurrency_limit: 100,
        ..quick()
    })
    .await;
    let variants = [("UTC", "eu"), ("UTC", "us"), ("America/New_York", "eu")];
    let apps: Vec<Journaled> = variants
        .iter()
        .map(|(zone, region)| journaled(&sim, &schedule(6, zone, region), ""))
        .collect();
    let outputs = futures_util::future::join_all(apps.iter().map(Journaled::backfill)).await;
    for output in &outputs {
        assert_eq!(output.status.code(), Some(0), "{}", text(output));
    }
    let mut owned = Vec::new();
    for (app, (zone, region)) in apps.iter().zip(variants) {
        owned.extend(assert_own_executions(&sim, app, zone, region));
        assert_eq!(
            app.count("SELECT count(*) FROM events WHERE kind = 'attempt.adopted'"),
            6
        );
    }
    // Nothing AMC created is untracked, and nothing is held twice.
    let ledger = sim.simulator.ledger();
    assert_eq!(ledger.len(), 18);
    owned.sort();
    owned.dedup();
    assert_eq!(owned.len(), 18);
    assert_eq!(sim.simulator.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_keeps_failing_leaves_the_attempt_open_and_visible_then_5xx_creates_are_adopted()
 {
    // Every call fails with 5xx; a create so answered was carried out.
    let sim = serve(SimConfig {
        faults: Faults {
            server_error_rate: 1.0,
            ..Faults::default()
        },
        ..quick()
    })
    .await;
    let app = journaled(&sim, &schedule(2, "UTC", "eu"), "");
    let output = app.backfill().await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("cannot tell whether AMC created attempt"),
        "{}",
        text(&output)
    );
    assert_eq!(
        sim.simulator.ledger().len(),
        2,
        "both creates were carried out"
    );
    assert_eq!(
        app.states(),
        ["intent", "intent"],
        "open, never abandoned blind"
    );
    let unresolved = app.count(
        "SELECT count(*) FROM events WHERE kind = 'attempt.unresolved'
         AND json_extract(payload, '$.reason') LIKE '%cannot tell whether AMC created%'",
    );
    assert_eq!(
        unresolved, 2,
        "each attempt left open is journaled with its reason"
    );
    // Visible without reading the log: `status` counts them with their
    // reasons, `weeks` marks their weeks, each raised an alert.
    let status = run_chronicle(&app.config_path, &["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["unresolved_attempts"], 2, "{status}");
    assert!(
        status["unresolved"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot tell whether AMC created"),
        "{status}"
    );
    let said = run_chronicle(&app.config_path, &["status"]).await;
    assert!(
        String::from_utf8_lossy(&said.stdout).contains("open attempts left unresolved: 2"),
        "{}",
        text(&said)
    );
    let weeks = run_chronicle(&app.config_path, &["weeks", "weekly", "--json"]).await;
    let weeks: serde_json::Value = serde_json::from_slice(&weeks.stdout).unwrap();
    assert!(
        weeks.as_array().unwrap().iter().all(|w| w["unresolved"]
            .as_str()
            .is_some_and(|r| r.contains("cannot tell"))),
        "{weeks}"
    );
    let table = run_chronicle(&app.config_path, &["weeks", "weekly"]).await;
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("running *"),
        "{}",
        text(&table)
    );
    assert_eq!(
        app.count("SELECT count(*) FROM alerts WHERE kind = 'attempt_unresolved'"),
        2
    );

    sim.simulator.set_faults(Faults::default());
    let output = app.backfill().await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(sim.simulator.ledger().len(), 2, "nothing submitted twice");
    let status = run_chronicle(&app.config_path, &["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["unresolved_attempts"], 0, "settled: {status}");
    assert_own_executions(&sim, &app, "UTC", "eu");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_next_token_ends_the_listing_with_a_clear_error_and_the_attempt_open() {
    let sim = serve(SimConfig {
        drop_create_rate: 1.0,
        list_page_size: 1,
        faults: Faults {
            looping_next_token: true,
            ..Faults::default()
        },
        ..quick()
    })
    .await;
    let app = journaled(&sim, &schedule(1, "UTC", "eu"), "");
    let output = app.backfill().await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("repeats nextToken \"loop\""),
        "{}",
        text(&output)
    );
    let lists = sim
        .simulator
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/workflowExecutions"))
        .count();
    assert!(lists <= 3, "{lists} list calls: the loop was followed");
    assert_eq!(app.states(), ["intent"]);

    sim.simulator.set_faults(Faults::default());
    let output = app.backfill().await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_own_executions(&sim, &app, "UTC", "eu");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_download_list_is_asked_again_never_taken_as_an_empty_result() {
    let sim = serve(SimConfig {
        faults: Faults {
            empty_download_urls: 3,
            ..Faults::default()
        },
        ..quick()
    })
    .await;
    let app = journaled(&sim, &schedule(1, "UTC", "eu"), "");
    let output = app.backfill().await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_own_executions(&sim, &app, "UTC", "eu");
    let asked = sim
        .simulator
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/downloadUrls"))
        .count();
    assert!(asked >= 4, "asked {asked} times");

    // Never any file: the week stays open, its attempt submitted.
    let sim = serve(SimConfig {
        faults: Faults {
            empty_download_urls: u32::MAX,
            ..Faults::default()
        },
        ..quick()
    })
    .await;
    let app = journaled(&sim, &schedule(1, "UTC", "eu"), "");
    let output = app.backfill().await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("AMC listed no result files"),
        "{}",
        text(&output)
    );
    let weeks = app.weeks();
    let (status, _, rows, _) = weeks.values().next().unwrap();
    assert_ne!(status, "completed");
    assert_eq!(*rows, None);
    assert_eq!(app.states(), ["submitted"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_result_form_is_counted_by_records_and_checksummed_as_sent() {
    let forms = [
        // Concatenated gzip members, quoted line breaks, no final line break, three parts.
        SimConfig {
            gzip_results: true,
            gzip_members: 3,
            result_parts: 3,
            quoted_line_breaks: true,
            trailing_newline: false,
            ..quick()
        },
        // One plain part without its final line break.
        SimConfig {
            trailing_newline: false,
            ..quick()
        },
        // Quoted line breaks in plain parts that end with one.
        SimConfig {
            quoted_line_breaks: true,
            result_parts: 2,
            ..quick()
        },
    ];
    for form in forms {
        let sim = serve(form.clone()).await;
        let app = journaled(&sim, &schedule(2, "UTC", "eu"), "results_dir = \"results\"");
        let output = app.backfill().await;
        assert_eq!(output.status.code(), Some(0), "{form:?}\n{}", text(&output));
        for id in assert_own_executions(&sim, &app, "UTC", "eu") {
            let kept =
                std::fs::read(app.dir.path().join("results").join(format!("{id}.csv"))).unwrap();
            assert_eq!(kept, sim.simulator.result_csv(&id).unwrap(), "{form:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_retry_after_and_expires_in_end_in_a_clear_error_not_a_crash() {
    let sim = serve(SimConfig {
        faults: Faults {
            throttle_rate: 1.0,
            retry_after_secs: u64::MAX,
            token_expires_in: Some(18_000_000_000_000_000_000),
            ..Faults::default()
        },
        ..quick()
    })
    .await;
    let app = journaled(
        &sim,
        &schedule(1, "UTC", "eu"),
        "retry_max_elapsed = \"200ms\"",
    );
    let output = app.backfill().await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(!text(&output).contains("panicked"), "{}", text(&output));
    assert!(text(&output).contains("HTTP 429"), "{}", text(&output));
    assert!(sim.simulator.ledger().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_id_that_would_leave_its_path_is_refused_at_load() {
    let sim = serve(quick()).await;
    let body = schedule(1, "UTC", "eu").replace(INSTANCE, "amcinj01/../amcother");
    let app = journaled(&sim, &body, "");
    let output = app.backfill().await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("weekly.toml") && stderr.contains("key `instance_id`"),
        "{stderr}"
    );
    assert!(sim.simulator.requests().is_empty(), "nothing was sent");
}
