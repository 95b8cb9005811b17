//! Journal commit benchmark: how many durable commits per second the real
//! write path makes (`Journal::record_intent` then `record_submitted`, the
//! two fsynced commits that stand before and after each AMC create), against
//! the disk's bound measured in the same run: a bare rusqlite loop doing one
//! INSERT per committed transaction with the journal's pragmas (WAL,
//! `synchronous=FULL`). Then the same with many submitters at once, whose
//! changes the journal commits in groups (one fsync for several), against
//! the same bound, and what the bare loop reaches with as many rows per
//! commit.
//!
//! Prints one line per figure with value, limit and ratio. Method and
//! figures are in BENCHMARKS.md. Run: `cargo bench --bench journal`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use chronicle::journal::{Journal, WorkItem};
use chronicle::schedule::Schedule;
use chrono::NaiveDate;
use common::verdict;
use rusqlite::Connection;

/// Commits per sample: two per week, so this many weeks' worth halved.
const COMMITS_PER_SAMPLE: usize = 400;
/// Each figure is the best of this many samples, interleaved with its bound.
const SAMPLES: usize = 7;
/// Concurrent submitters tried (one thread each, sharing one `Journal`).
const SUBMITTERS: [usize; 3] = [1, 4, 16];
/// The issue's target for one submitter, as a share of the bound.
const SINGLE_TARGET: f64 = 0.8;
/// The issue's target for `GROUP_SUBMITTERS` (group commit), in bounds.
const GROUP_TARGET: f64 = 4.0;
const GROUP_SUBMITTERS: usize = 16;
/// Weeks whose two commits are counted in WAL frames: few enough that the
/// WAL (auto-checkpointed at 1,000 frames) only grows while they run.
const PAGE_WEEKS: usize = 25;

fn main() -> Result<()> {
    if common::skipped_outside_cargo_bench("journal") {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    println!(
        "journal files in {} (the disk under test)",
        work.path().display()
    );
    let weeks_needed = COMMITS_PER_SAMPLE / 2 * SAMPLES * (SUBMITTERS.len() + 1) + PAGE_WEEKS;
    let (journal, schedule, mut weeks) = planned_journal(work.path(), weeks_needed)?;
    let bare_path = work.path().join("bare.db");
    let bare = bare_connection(&bare_path)?;

    let pages = pages_per_commit(&journal, &schedule, take(&mut weeks, PAGE_WEEKS))?;
    let bound_pages = bare_pages_per_commit(&bare, &bare_path)?;
    println!(
        "WAL pages per commit: intent {:.1}, submitted {:.1}; bound {bound_pages:.1} (mean of {PAGE_WEEKS} weeks)",
        pages[0], pages[1]
    );

    // One warm-up of each, untimed.
    bare_commits(&bare, 50, 1)?;
    real_commits(&journal, &schedule, take(&mut weeks, 25), 1)?;

    let per_second = |elapsed: Duration| COMMITS_PER_SAMPLE as f64 / elapsed.as_secs_f64();
    let [(bound, bound_cpu), (single, single_cpu)] = alternate(&bare, || {
        let weeks = take(&mut weeks, COMMITS_PER_SAMPLE / 2);
        real_commits(&journal, &schedule, weeks, 1)
    })?;
    let (bound_rate, single_rate) = (per_second(bound), per_second(single));
    println!(
        "bound: bare rusqlite, one INSERT per commit, WAL + synchronous=FULL: {bound_rate:.0} commits/s ({:.2} ms per commit; best of {SAMPLES} x {COMMITS_PER_SAMPLE})",
        bound.as_secs_f64() * 1e3 / COMMITS_PER_SAMPLE as f64
    );
    println!(
        "journal, 1 submitter, record_intent + record_submitted: {single_rate:.0} commits/s ({:.0} weeks submitted/s); bound {bound_rate:.0}; ratio {:.2} (target >= {SINGLE_TARGET}) {}",
        single_rate / 2.0,
        single_rate / bound_rate,
        verdict(single_rate / bound_rate >= SINGLE_TARGET)
    );
    println!(
        "CPU per commit: journal {:.0} µs; bound {:.0} µs; ratio {:.2} (no target: the work the bound does not do)",
        single_cpu.as_secs_f64() * 1e6 / COMMITS_PER_SAMPLE as f64,
        bound_cpu.as_secs_f64() * 1e6 / COMMITS_PER_SAMPLE as f64,
        common::ratio(single_cpu, bound_cpu)
    );

    for &submitters in &SUBMITTERS[1..] {
        let before = journal.commit_counts();
        let [(bound, _), (best, _)] = alternate(&bare, || {
            let weeks = take(&mut weeks, COMMITS_PER_SAMPLE / 2);
            real_commits(&journal, &schedule, weeks, submitters)
        })?;
        let after = journal.commit_counts();
        let per_commit =
            (after.changes - before.changes) as f64 / (after.commits - before.commits) as f64;
        let (bound_rate, rate) = (per_second(bound), per_second(best));
        let ratio = rate / bound_rate;
        let target = if submitters == GROUP_SUBMITTERS {
            format!(
                "target >= {GROUP_TARGET} {}",
                verdict(ratio >= GROUP_TARGET)
            )
        } else {
            "no target: measured".to_owned()
        };
        println!(
            "journal, {submitters} concurrent submitters: {rate:.0} commits/s; single-writer bound {bound_rate:.0} (same window); ratio {ratio:.2} ({target}); {per_commit:.1} changes per COMMIT"
        );
    }

    // What batching several submitters' changes into one transaction (group
    // commit) could reach: the bare loop again, N inserts per fsync.
    for &group in &SUBMITTERS[1..] {
        let [(bound, _), (best, _)] =
            alternate(&bare, || bare_commits(&bare, COMMITS_PER_SAMPLE, group))?;
        let (bound_rate, rate) = (per_second(bound), per_second(best));
        println!(
            "group-commit ceiling: bare rusqlite, {group} INSERTs per commit: {rate:.0} inserts/s; single-writer bound {bound_rate:.0} (same window); ratio {:.2} (no target: what a group commit could buy)",
            rate / bound_rate
        );
    }
    Ok(())
}

/// Best of `SAMPLES` of the bound and of `measure`, taken alternately so
/// both see the same moments of a shared disk: `[bound, measured]`, each
/// `(wall, CPU)`.
fn alternate(
    bare: &Connection,
    mut measure: impl FnMut() -> Result<Duration>,
) -> Result<[(Duration, Duration); 2]> {
    let mut best = [(Duration::MAX, Duration::MAX); 2];
    for _ in 0..SAMPLES {
        for (slot, best) in best.iter_mut().enumerate() {
            let cpu = common::cpu_time_self();
            let wall = if slot == 0 {
                bare_commits(bare, COMMITS_PER_SAMPLE, 1)?
            } else {
                measure()?
            };
            let cpu = common::cpu_time_self() - cpu;
            *best = (best.0.min(wall), best.1.min(cpu));
        }
    }
    Ok(best)
}

fn take(weeks: &mut Vec<WorkItem>, n: usize) -> Vec<WorkItem> {
    weeks.split_off(weeks.len() - n)
}

/// A journal planned through the real path with `weeks` pending weeks, each
/// of which a sample will submit once.
fn planned_journal(dir: &Path, weeks: usize) -> Result<(Journal, Schedule, Vec<WorkItem>)> {
    let today = NaiveDate::from_ymd_opt(2026, 1, 5).expect("valid date");
    let file = dir.join("weekly.toml");
    std::fs::write(
        &file,
        format!(
            r#"cron = "0 0 6 * * Mon"
instance_id = "amcbench01"
workflow_id = "campaign_performance"
week_start = "monday"
backfill_weeks = {weeks}

[parameters]
region = "eu"
"#
        ),
    )?;
    let schedule = Schedule::from_file(&file, today)?;
    let journal = Journal::open(&dir.join("journal.db"))?;
    let plan = journal.plan(&schedule, today)?;
    ensure!(plan.work.len() == weeks, "planned {}", plan.work.len());
    Ok((journal, schedule, plan.work))
}

/// The real path for each week: the intent commit, then the commit of the
/// execution id AMC answered with, split over `submitters` threads sharing
/// one `Journal` handle as the runner's week tasks do. Returns the time for
/// all of them (two commits per week).
fn real_commits(
    journal: &Journal,
    schedule: &Schedule,
    weeks: Vec<WorkItem>,
    submitters: usize,
) -> Result<Duration> {
    let mut shares: Vec<Vec<WorkItem>> = vec![Vec::new(); submitters];
    for (i, week) in weeks.into_iter().enumerate() {
        shares[i % submitters].push(week);
    }
    let started = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                let journal = journal.clone();
                scope.spawn(move || -> Result<()> {
                    for week in share {
                        let request = schedule.request(week.week_start);
                        let mut attempt = journal.record_intent(week.week_id, &request, "bench")?;
                        let execution = common::created(&attempt, &request);
                        journal.record_submitted(&mut attempt, &execution, false)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("submitter threads do not panic"))
    })?;
    Ok(started.elapsed())
}

/// Frames in a WAL file of this size (`size` 0: truncated, none).
fn wal_frames(wal: &Path, page_size: u64) -> Result<u64> {
    let size = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
    // A 32-byte file header, then frames of a 24-byte header and a page.
    Ok(size.saturating_sub(32) / (page_size + 24))
}

/// Empties the WAL of the database at `db` (into the database file) and
/// returns its page size, so that the frames counted next are all new.
fn truncate_wal(db: &Path) -> Result<u64> {
    let connection = Connection::open(db)?;
    connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let page_size: i64 = connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    Ok(u64::try_from(page_size)?)
}

/// Mean WAL frames (pages) an intent and a submitted commit write on the
/// real path: the WAL's growth across each commit, from an empty WAL that
/// stays under the auto-checkpoint for all of `weeks`.
fn pages_per_commit(
    journal: &Journal,
    schedule: &Schedule,
    weeks: Vec<WorkItem>,
) -> Result<[f64; 2]> {
    let db = journal.path().to_path_buf();
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let page_size = truncate_wal(&db)?;
    let mut frames = [0u64; 2];
    let mut last = wal_frames(&wal, page_size)?;
    let mut grew = |slot: usize| -> Result<()> {
        let now = wal_frames(&wal, page_size)?;
        ensure!(
            now > last,
            "the WAL was checkpointed while pages were counted"
        );
        frames[slot] += now - last;
        last = now;
        Ok(())
    };
    let count = weeks.len() as f64;
    for week in weeks {
        let request = schedule.request(week.week_start);
        let mut attempt = journal.record_intent(week.week_id, &request, "bench")?;
        grew(0)?;
        let execution = common::created(&attempt, &request);
        journal.record_submitted(&mut attempt, &execution, false)?;
        grew(1)?;
    }
    Ok(frames.map(|f| f as f64 / count))
}

/// The same count for the bound's one INSERT per commit.
fn bare_pages_per_commit(bare: &Connection, path: &Path) -> Result<f64> {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let page_size = truncate_wal(path)?;
    let before = wal_frames(&wal, page_size)?;
    bare_commits(bare, PAGE_WEEKS, 1)?;
    Ok((wal_frames(&wal, page_size)? - before) as f64 / PAGE_WEEKS as f64)
}

/// The disk's bound: the journal's pragmas on a plain table.
fn bare_connection(path: &PathBuf) -> Result<Connection> {
    let connection = Connection::open(path)?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         CREATE TABLE rows (id INTEGER PRIMARY KEY, payload TEXT NOT NULL);",
    )?;
    Ok(connection)
}

/// `inserts` INSERTs, `per_commit` per `BEGIN IMMEDIATE ... COMMIT`.
fn bare_commits(connection: &Connection, inserts: usize, per_commit: usize) -> Result<Duration> {
    let payload = "x".repeat(200);
    let started = Instant::now();
    let mut done = 0;
    while done < inserts {
        connection.execute_batch("BEGIN IMMEDIATE")?;
        for _ in 0..per_commit.min(inserts - done) {
            connection
                .prepare_cached("INSERT INTO rows (payload) VALUES (?1)")?
                .execute([&payload])?;
            done += 1;
        }
        connection.execute_batch("COMMIT")?;
    }
    Ok(started.elapsed())
}
