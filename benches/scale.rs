//! Scale benchmark: does a command cost the same on a journal with 20 years
//! of history as on one with a thousandth of it? Two journals are generated
//! with the real schema (the journal's own migrations) and bulk-inserted,
//! hash-chained rows: 100 schedules with 1,040 weekly weeks each (about
//! 104,000 weeks, 300,000 attempts, 1.3 million events), and the same 100
//! schedules with one week each. Then, on both, best of a few runs:
//!
//! - `chronicle status` and `chronicle lineage` (the release binary, its wall
//!   time and peak memory from wait4);
//! - planning one firing (`Journal::plan` for one schedule);
//! - start-up recovery as the daemon does it (`record_runner_start`, then
//!   `Journal::work` for every schedule).
//!
//! Prints one line per figure: small, large, ratio large/small against the
//! limit of 2, and peak memory against 100 MB. Method and figures are in
//! BENCHMARKS.md. Run: `cargo bench --bench scale`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use chronicle::journal::Journal;
use chronicle::journal::identity;
use chronicle::schedule::Schedule;
use chronicle::schedule::week;
use chrono::{DateTime, Days, NaiveDate, SecondsFormat, Utc};
use common::{megabytes, ms, ratio, secs, thousands, verdict};
use rusqlite::{Connection, params};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const SCHEDULES: usize = 100;
/// 20 years of weekly history, and a thousandth of it (one week).
const LARGE_WEEKS: usize = 1_040;
const SMALL_WEEKS: usize = 1;
/// Schedules whose newest week has an attempt left open (submitted), so
/// recovery and planning have something to find on both journals.
const OPEN_SCHEDULES: usize = 10;
/// Runs per figure; the best is reported (the host is shared).
const RUNS: usize = 5;
const RATIO_TARGET: f64 = 2.0;
const MEMORY_TARGET: u64 = 100_000_000;

fn main() -> Result<()> {
    if common::serve_as_launcher()? || common::skipped_outside_cargo_bench("scale") {
        return Ok(());
    }
    // SCALE_BENCH_KEEP=<dir> keeps the generated journals there, to look
    // at them with the sqlite3 shell afterwards.
    let work = tempfile::tempdir()?;
    let work_dir = match std::env::var_os("SCALE_BENCH_KEEP") {
        Some(dir) => PathBuf::from(dir),
        None => work.path().to_path_buf(),
    };
    let today = NaiveDate::from_ymd_opt(2026, 1, 5).expect("valid date");
    let mut journals = Vec::new();
    for (label, weeks) in [("small", SMALL_WEEKS), ("large", LARGE_WEEKS)] {
        let dir = work_dir.join(label);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let started = Instant::now();
        let built = generate(&dir, weeks, today)?;
        println!(
            "{label} journal: {} schedules x {} weeks = {} weeks, {} attempts, {} events, {}; generated in {} (chain verified in {})",
            SCHEDULES,
            thousands(weeks as u64),
            thousands(built.weeks),
            thousands(built.attempts),
            thousands(built.events),
            megabytes(built.bytes),
            secs(started.elapsed() - built.verify),
            secs(built.verify)
        );
        journals.push(built);
    }
    let (small, large) = (&journals[0], &journals[1]);

    // The commands as a user types them. `weeks` prints the schedule's
    // whole history, so on the large journal it prints 1,040 lines to the
    // small one's 1: its ratio includes that output, not only the lookup.
    let commands = |j: &Built| -> Vec<Vec<String>> {
        vec![
            vec!["status".into()],
            vec!["status".into(), "--json".into()],
            vec!["weeks".into(), schedule_name(0)],
            vec!["weeks".into(), schedule_name(0), "--grid".into()],
            vec!["lineage".into(), j.execution_key.clone()],
            vec!["lineage".into(), j.week_key.clone()],
        ]
    };
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_chronicle"));
    for (small_args, large_args) in commands(small).into_iter().zip(commands(large)) {
        let mut best = [(Duration::MAX, 0u64), (Duration::MAX, 0u64)];
        for _ in 0..RUNS {
            for (slot, (journal, args)) in [(small, &small_args), (large, &large_args)]
                .into_iter()
                .enumerate()
            {
                let mut full = vec!["--config".to_owned(), journal.config.display().to_string()];
                full.extend(args.iter().cloned());
                let (run, printed) = common::run_child_measured(&binary, &full)?;
                ensure!(printed > 0, "`{}` printed nothing", args.join(" "));
                best[slot].0 = best[slot].0.min(run.wall);
                best[slot].1 = best[slot].1.max(run.peak_rss_bytes);
            }
        }
        let shown = match large_args[0].as_str() {
            "lineage" if large_args[1].contains('-') && large_args[1].len() == 10 => {
                "lineage <week date> (one week per schedule: 100 weeks)".to_owned()
            }
            "lineage" => "lineage <AMC execution id>".to_owned(),
            _ => large_args.join(" "),
        };
        report(&shown, best[0].0, best[1].0);
        println!(
            "  peak memory of `chronicle {shown}` on the large journal: {}; limit {}; ratio {:.2} {}",
            megabytes(best[1].1),
            megabytes(MEMORY_TARGET),
            best[1].1 as f64 / MEMORY_TARGET as f64,
            verdict(best[1].1 <= MEMORY_TARGET)
        );
    }

    // `audit` reads the whole log by design (chain, replay, state tables),
    // so it has no ratio target; it also proves the generated journals are
    // ones chronicle would have written: any finding fails the bench.
    for (label, journal) in [("small", small), ("large", large)] {
        let args = vec![
            "--config".to_owned(),
            journal.config.display().to_string(),
            "audit".to_owned(),
        ];
        let (run, _) = common::run_child_measured(&binary, &args)?;
        println!(
            "audit of the {label} journal: clean; {} wall, peak memory {} (no target: it reads every event)",
            ms(run.wall),
            megabytes(run.peak_rss_bytes)
        );
    }

    let open = |b: &Built| Journal::open(&b.path);
    let (small_journal, large_journal) = (open(small)?, open(large)?);
    let schedule = |b: &Built| Schedule::from_file(&b.schedules.join("sched-000.toml"), today);
    let (small_schedule, large_schedule) = (schedule(small)?, schedule(large)?);
    let mut plan = [Duration::MAX; 2];
    let mut recovery = [Duration::MAX; 2];
    let mut scrape = [Duration::MAX; 2];
    for _ in 0..RUNS {
        for (slot, (journal, schedule)) in [
            (&small_journal, &small_schedule),
            (&large_journal, &large_schedule),
        ]
        .into_iter()
        .enumerate()
        {
            let started = Instant::now();
            let planned = journal.plan(schedule, today)?;
            plan[slot] = plan[slot].min(started.elapsed());
            ensure!(
                planned.weeks_added == 0,
                "the generated journal was not up to date"
            );
            ensure!(
                planned.work.len() == 1 && planned.work[0].open_attempt.is_some(),
                "planning found {} weeks needing work, expected the one left open",
                planned.work.len()
            );

            // What the daemon does for each GET /metrics.
            let started = Instant::now();
            let page = chronicle::daemon::metrics::render(&journal.metrics_snapshot(Utc::now())?);
            scrape[slot] = scrape[slot].min(started.elapsed());
            ensure!(
                page.contains("chronicle_schedule_weeks{"),
                "the scrape lacks the per-schedule weeks"
            );

            let started = Instant::now();
            let found = recover(journal)?;
            recovery[slot] = recovery[slot].min(started.elapsed());
            ensure!(
                found == OPEN_SCHEDULES,
                "recovery found {found} open attempts"
            );
        }
    }
    report(
        "planning one firing (Journal::plan, one schedule)",
        plan[0],
        plan[1],
    );
    report(
        "start-up recovery (record_runner_start + Journal::work for 100 schedules)",
        recovery[0],
        recovery[1],
    );
    report(
        "one /metrics scrape (Journal::metrics_snapshot + render)",
        scrape[0],
        scrape[1],
    );
    println!(
        "  peak memory of this bench process (both journals open, in-process figures): {} (no target: the bench holds more than one command)",
        megabytes(common::peak_rss_self_bytes())
    );
    Ok(())
}

/// What the daemon does with the journal when it starts: note the start
/// (counting open attempts), then ask each schedule for its work and resume
/// the open attempts. Returns how many it found.
fn recover(journal: &Journal) -> Result<usize> {
    let counted = journal.record_runner_start("run")?;
    let mut found = 0;
    for i in 0..SCHEDULES {
        let collection = identity::collection_id(&schedule_name(i));
        found += journal
            .work(collection)?
            .iter()
            .filter(|w| w.open_attempt.is_some())
            .count();
    }
    ensure!(
        counted as usize == found,
        "counted {counted}, found {found}"
    );
    Ok(found)
}

fn report(what: &str, small: Duration, large: Duration) {
    let r = ratio(large, small);
    println!(
        "{what}: small {}; large {}; ratio large/small {r:.2} (target <= {RATIO_TARGET}) {}",
        ms(small),
        ms(large),
        verdict(r <= RATIO_TARGET)
    );
}

fn schedule_name(i: usize) -> String {
    format!("sched-{i:03}")
}

/// A generated journal and what the commands are pointed at.
struct Built {
    path: PathBuf,
    config: PathBuf,
    schedules: PathBuf,
    weeks: u64,
    attempts: u64,
    events: u64,
    bytes: u64,
    verify: Duration,
    /// An AMC execution id of a week in the middle of the last schedule's
    /// history.
    execution_key: String,
    /// The newest week's date: one week per schedule.
    week_key: String,
}

/// The event chain as `journal::chain` computes it (ARCHITECTURE.md,
/// "Event hash chain"); `verify_chain` afterwards proves the two agree.
struct Chain<'c> {
    insert: rusqlite::Statement<'c>,
    seq: i64,
    prev: String,
}

impl Chain<'_> {
    fn append(
        &mut self,
        at: &str,
        kind: &str,
        subject: &str,
        payload: serde_json::Value,
    ) -> Result<i64> {
        self.seq += 1;
        let payload = payload.to_string();
        let canonical = format!(
            "{}\n{at}\n{kind}\n{subject}\n{payload}\n{}",
            self.seq, self.prev
        );
        let hash = hex::encode(Sha256::digest(canonical.as_bytes()));
        self.insert.execute(params![
            self.seq, at, kind, subject, payload, self.prev, hash
        ])?;
        self.prev = hash;
        Ok(self.seq)
    }
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Writes `SCHEDULES` schedule files asking for `weeks` weeks each, creates
/// the journal through `Journal::open` (migrations), then fills it the way
/// years of `chronicle run` would have: per week, oldest first and the
/// schedules interleaved, `week.added`, then attempts of four events each
/// (intent, submitted, RUNNING, outcome): two failed and one succeeded for
/// nine weeks in ten, one failed and one succeeded for the tenth. Every
/// change is synced (empty outbox). One `runner.started` per year of weeks.
/// Rows and events are written in large transactions without fsync; the
/// result is checked with `verify_chain`.
fn generate(dir: &Path, weeks: usize, today: NaiveDate) -> Result<Built> {
    let schedules_dir = dir.join("schedules");
    std::fs::create_dir_all(&schedules_dir)?;
    let mut schedules = Vec::new();
    for i in 0..SCHEDULES {
        let file = schedules_dir.join(format!("{}.toml", schedule_name(i)));
        std::fs::write(
            &file,
            format!(
                r#"cron = "0 0 6 * * Mon"
instance_id = "amcinstance{:02}"
workflow_id = "workflow_{i:03}"
week_start = "monday"
backfill_weeks = {weeks}

[parameters]
region = "eu"
"#,
                i % 7
            ),
        )?;
        schedules.push(Schedule::from_file(&file, today)?);
    }
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[journal]\npath = \"journal.db\"\n[schedules]\ndir = \"schedules\"\n",
    )?;
    let path = dir.join("journal.db");
    drop(Journal::open(&path)?);

    let mut connection = Connection::open(&path)?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA cache_size = -200000;",
    )?;
    let latest = week::latest_due(today, chrono::Weekday::Mon, 14);
    let start = week::configured_start(&schedules[0], today);
    let week_starts = week::due_weeks(start, latest);
    ensure!(week_starts.len() == weeks, "{} weeks", week_starts.len());
    let mut counts = (0u64, 0u64);
    let mut execution_key = String::new();
    let mut chain_state = (0i64, "0".repeat(64));
    for (year, chunk) in week_starts.chunks(52).enumerate() {
        let tx = connection.transaction()?;
        {
            let mut chain = Chain {
                insert: tx.prepare(
                    "INSERT INTO events (seq, at, kind, subject, payload, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?,
                seq: chain_state.0,
                prev: chain_state.1.clone(),
            };
            let mut insert_week = tx.prepare(
                "INSERT INTO weeks (id, collection_id, week_start, status, attempt_id, attempts,
                     started_at, completed_at, record_count, data_checksum, error_message,
                     created_at, updated_at, journal_seq)
                 VALUES (?1, ?2, ?3, ?4, NULL, 0, NULL, NULL, NULL, NULL, NULL, ?5, ?5, ?6)",
            )?;
            let mut finish_week = tx.prepare(
                "UPDATE weeks SET status = ?1, attempt_id = ?2, attempts = ?3, started_at = ?4,
                     completed_at = ?5, record_count = ?6, data_checksum = ?7, updated_at = ?8,
                     journal_seq = ?9
                 WHERE id = ?10",
            )?;
            let mut touch_collection =
                tx.prepare("UPDATE collections SET journal_seq = ?1 WHERE id = ?2")?;
            let mut insert_attempt = tx.prepare(
                "INSERT INTO attempts (id, week_id, amc_execution_id, state, amc_status, request,
                     triggered_by, row_count, data_checksum, error_message, created_at,
                     submitted_at, completed_at, updated_at, journal_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'run', ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            if year == 0 {
                for schedule in &schedules {
                    let at = stamp(first_time(week_starts[0]));
                    let id = identity::collection_id(&schedule.name);
                    let seq = chain.append(
                        &at,
                        "collection.created",
                        &id.to_string(),
                        json!({"name": schedule.name, "start_date": start,
                               "workflow_id": schedule.workflow_id,
                               "instance_id": schedule.instance_id,
                               "schedule_file": schedule.file.display().to_string(),
                               "schedule_hash": schedule.content_hash}),
                    )?;
                    tx.execute(
                        "INSERT INTO collections (id, name, workflow_id, instance_id, start_date,
                             end_date, schedule_file, schedule_hash, created_at, updated_at,
                             journal_seq)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
                        params![
                            id.to_string(),
                            schedule.name,
                            schedule.workflow_id,
                            schedule.instance_id,
                            start.to_string(),
                            week::inclusive_end(latest).to_string(),
                            schedule.file.display().to_string(),
                            schedule.content_hash,
                            at,
                            seq
                        ],
                    )?;
                }
            }
            let at = stamp(first_time(chunk[0]));
            chain.append(
                &at,
                "runner.started",
                "runner",
                json!({"command": "run", "pid": 4242, "open_attempts": 0}),
            )?;
            for (index, &week_start) in chunk.iter().enumerate() {
                let tries = if (year * 52 + index) % 10 == 9 { 2 } else { 3 };
                let newest = week_start == latest;
                for (s, schedule) in schedules.iter().enumerate() {
                    let collection = identity::collection_id(&schedule.name);
                    let week_id = identity::week_id(collection, week_start).to_string();
                    let mut at = first_time(week_start);
                    let seq = chain.append(
                        &stamp(at),
                        "week.added",
                        &week_id,
                        json!({"collection_id": collection, "week_start": week_start}),
                    )?;
                    insert_week.execute(params![
                        week_id,
                        collection.to_string(),
                        week_start.to_string(),
                        "pending",
                        stamp(at),
                        seq
                    ])?;
                    counts.0 += 1;
                    let request = serde_json::to_value(schedule.request(week_start))?;
                    let left_open = newest && s < OPEN_SCHEDULES;
                    for t in 0..tries {
                        let last = t + 1 == tries;
                        let attempt = Uuid::now_v7().to_string();
                        let execution = format!("exec-{attempt}");
                        if s == SCHEDULES - 1 && week_start == week_starts[weeks / 2] && last {
                            execution_key = execution.clone();
                        }
                        let created = stamp(at);
                        chain.append(
                            &created,
                            "attempt.intent",
                            &attempt,
                            json!({"week_id": week_id, "request": request, "triggered_by": "run"}),
                        )?;
                        at += chrono::Duration::seconds(1);
                        let submitted = stamp(at);
                        let submitted_seq = chain.append(
                            &submitted,
                            "attempt.submitted",
                            &attempt,
                            json!({"amc_execution_id": execution, "status": "PENDING"}),
                        )?;
                        at += chrono::Duration::seconds(60);
                        let mut seq = chain.append(
                            &stamp(at),
                            "attempt.status",
                            &attempt,
                            json!({"status": "RUNNING"}),
                        )?;
                        at += chrono::Duration::minutes(20);
                        let done = stamp(at);
                        let rows = 20 + (counts.1 % 180) as i64;
                        let checksum = hex::encode(Sha256::digest(execution.as_bytes()));
                        let (state, status, error) = if last && left_open {
                            ("submitted", "RUNNING", None)
                        } else if last {
                            seq = chain.append(
                                &done,
                                "attempt.succeeded",
                                &attempt,
                                json!({"week_id": week_id, "amc_execution_id": execution,
                                       "record_count": rows, "data_checksum": checksum}),
                            )?;
                            ("succeeded", "SUCCEEDED", None)
                        } else {
                            let error = "simulated failure: query ran out of memory";
                            seq = chain.append(
                                &done,
                                "attempt.failed",
                                &attempt,
                                json!({"week_id": week_id, "status": "FAILED", "error": error,
                                       "week_failed": false}),
                            )?;
                            ("failed", "FAILED", Some(error))
                        };
                        let finished = state != "submitted";
                        insert_attempt.execute(params![
                            attempt,
                            week_id,
                            execution,
                            state,
                            status,
                            request.to_string(),
                            (state == "succeeded").then_some(rows),
                            (state == "succeeded").then_some(&checksum),
                            error,
                            created,
                            submitted,
                            finished.then_some(&done),
                            done,
                            seq
                        ])?;
                        counts.1 += 1;
                        if finished {
                            // A week's outcome also stamps its collection.
                            touch_collection.execute(params![seq, collection.to_string()])?;
                        }
                        if last {
                            // An open attempt's status changes leave its week
                            // as the submit left it.
                            let week_seq = if finished { seq } else { submitted_seq };
                            finish_week.execute(params![
                                if finished { "completed" } else { "running" },
                                attempt,
                                tries,
                                created,
                                finished.then_some(&done),
                                finished.then_some(rows),
                                finished.then_some(&checksum),
                                done,
                                week_seq,
                                week_id
                            ])?;
                        }
                        at += chrono::Duration::hours(2);
                    }
                }
            }
            chain_state = (chain.seq, chain.prev.clone());
        }
        tx.commit()?;
    }
    connection.execute_batch(
        "UPDATE sync_state SET last_success_at = '2026-01-05T06:00:00.000Z',
             last_attempt_at = '2026-01-05T06:00:00.000Z';
         PRAGMA wal_checkpoint(TRUNCATE);",
    )?;
    drop(connection);
    let started = Instant::now();
    let journal = Journal::open(&path)?;
    ensure!(
        journal.verify_chain()?.is_none(),
        "the generated chain breaks"
    );
    ensure!(journal.pending_count()? == 0, "the outbox is not empty");
    let verify = started.elapsed();
    drop(journal);
    Ok(Built {
        bytes: std::fs::metadata(&path)?.len(),
        path,
        config,
        schedules: schedules_dir,
        weeks: counts.0,
        attempts: counts.1,
        events: chain_state.0 as u64,
        verify,
        execution_key: if execution_key.is_empty() {
            "missing".into()
        } else {
            execution_key
        },
        week_key: latest.to_string(),
    })
}

/// When the week's work begins: three weeks after its start (a week is due
/// 14 days after it ends), at 06:00 UTC.
fn first_time(week_start: NaiveDate) -> DateTime<Utc> {
    (week_start + Days::new(21))
        .and_hms_opt(6, 0, 0)
        .expect("valid time")
        .and_utc()
}
