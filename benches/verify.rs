//! Verify benchmark: `chronicle verify` (the release binary) on a journal
//! of 1,000 weeks and on one of 100,000, each synced into its own database
//! of a throwaway PostgreSQL, timed and its peak memory read from wait4.
//! Memory flat means the large run's peak within a small margin of the
//! small one's. With `VERIFY_BENCH_BASELINE=<binary>` (another build of
//! chronicle, e.g. the all-in-memory verify before it walked in pages) the
//! same runs are made with that binary too, in the same process, for a
//! same-run ratio.
//!
//! Prints one line per figure. Method and figures are in BENCHMARKS.md.
//! Run: `cargo bench --bench verify`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use chronicle::journal::Journal;
use chronicle::schedule::Schedule;
use chronicle::sync::reconciler;
use chronicle::throwaway::Cluster;
use chronicle::warehouse::Warehouse;
use chronicle::warehouse::tls::TlsOptions;
use chrono::NaiveDate;
use common::{ChildRun, megabytes, ratio, secs, thousands, verdict};

const SIZES: [usize; 2] = [1_000, 100_000];
/// Timed runs per binary and size; the best is reported.
const RUNS: usize = 3;
/// "Flat": the large journal's peak within this factor of the small one's.
const FLAT: f64 = 1.25;

fn main() -> Result<()> {
    if common::serve_as_launcher()? {
        return Ok(());
    }
    if common::skipped_outside_cargo_bench("verify") {
        return Ok(());
    }
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut synced = Vec::new();
    for weeks in SIZES {
        synced.push(runtime.block_on(synced_journal(&cluster, dir.path(), weeks))?);
    }
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_chronicle"));
    let baseline = std::env::var_os("VERIFY_BENCH_BASELINE").map(PathBuf::from);
    let mut binaries = vec![("paged", ours)];
    if let Some(path) = baseline {
        binaries.push(("baseline", path));
    }
    println!("verify benchmark: one collection of N weeks, synced, no drift");
    let mut best = Vec::new();
    for (name, binary) in &binaries {
        for config in &synced {
            let run = best_of(binary, config)?;
            println!(
                "  {name:<8} {:>7} weeks: {}, peak {}, {:.1} µs per week",
                thousands(config.weeks as u64),
                secs(run.wall),
                megabytes(run.peak_rss_bytes),
                run.wall.as_secs_f64() * 1e6 / config.weeks as f64
            );
            best.push((*name, config.weeks, run));
        }
    }
    let peak = |name: &str, weeks: usize| -> u64 {
        best.iter()
            .find(|(n, w, _)| *n == name && *w == weeks)
            .map_or(0, |(_, _, run)| run.peak_rss_bytes)
    };
    let growth = peak("paged", SIZES[1]) as f64 / peak("paged", SIZES[0]).max(1) as f64;
    println!(
        "  paged: peak at {} weeks / at {} weeks = {growth:.2} (flat: <= {FLAT}) {}",
        thousands(SIZES[1] as u64),
        thousands(SIZES[0] as u64),
        verdict(growth <= FLAT)
    );
    if binaries.len() > 1 {
        let wall = |name: &str| {
            best.iter()
                .find(|(n, w, _)| *n == name && *w == SIZES[1])
                .map(|(_, _, run)| run.wall)
                .unwrap_or_default()
        };
        println!(
            "  at {} weeks: paged / baseline time {:.2}, memory {:.2}; baseline's growth {:.2}",
            thousands(SIZES[1] as u64),
            ratio(wall("paged"), wall("baseline")),
            peak("paged", SIZES[1]) as f64 / peak("baseline", SIZES[1]).max(1) as f64,
            peak("baseline", SIZES[1]) as f64 / peak("baseline", SIZES[0]).max(1) as f64
        );
    }
    Ok(())
}

struct Synced {
    weeks: usize,
    config: PathBuf,
}

/// A journal of `weeks` pending weeks (`Journal::plan`), drained into a
/// fresh database chronicle migrates, and a config naming both.
async fn synced_journal(cluster: &Cluster, dir: &Path, weeks: usize) -> Result<Synced> {
    let dir = dir.join(format!("weeks-{weeks}"));
    let schedules = dir.join("schedules");
    std::fs::create_dir_all(&schedules)?;
    // A fixed date so every run plans the same weeks.
    let today = NaiveDate::from_ymd_opt(2026, 1, 5).context("valid date")?;
    let schedule_path = schedules.join("weekly.toml");
    std::fs::write(
        &schedule_path,
        format!(
            "cron = \"0 0 6 * * Mon\"\ninstance_id = \"amcbench\"\nworkflow_id = \"wf_bench\"\n\
             week_start = \"monday\"\nbackfill_weeks = {weeks}\ndata_lag_days = 14\n"
        ),
    )?;
    let schedule = Schedule::from_file(&schedule_path, today)?;
    let journal_path = dir.join("journal.db");
    let journal = Journal::open(&journal_path)?;
    let plan = journal.plan(&schedule, today)?;
    ensure!(plan.weeks_added == weeks, "plan added {}", plan.weeks_added);
    let url = cluster
        .create_database(&format!("verify_{weeks}"))
        .await
        .context("a database per size")?;
    let mut warehouse = Warehouse::connect(&url, &TlsOptions::default()).await?;
    let started = Instant::now();
    reconciler::drain(&journal, &mut warehouse, 5_000).await?;
    ensure!(journal.pending_count()? == 0, "the drain left rows behind");
    println!(
        "  synced {} weeks in {}",
        thousands(weeks as u64),
        secs(started.elapsed())
    );
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[journal]\npath = \"{}\"\n[schedules]\ndir = \"{}\"\n[postgres]\nurl = \"{url}\"\n",
            journal_path.display(),
            schedules.display()
        ),
    )?;
    Ok(Synced { weeks, config })
}

/// The fastest of `RUNS` runs of `verify`; each must find no drift (exit 0).
fn best_of(binary: &Path, synced: &Synced) -> Result<ChildRun> {
    let args = vec![
        "--config".to_owned(),
        synced.config.display().to_string(),
        "verify".to_owned(),
    ];
    let mut best: Option<ChildRun> = None;
    for _ in 0..RUNS {
        let (run, _) = common::run_child_measured(binary, &args)?;
        if best.as_ref().is_none_or(|b| run.wall < b.wall) {
            best = Some(run);
        }
    }
    best.context("at least one run")
}
