//! `chronicle demo`: the whole pipeline on one machine with nothing to set
//! up: the built-in AMC simulator, a throwaway PostgreSQL cluster when the
//! server binaries are installed, the example schedule's backfill, the sync,
//! and a summary pointing at what to try next.
//!
//! Owns the demo's folder and wiring only; every step is the real code path.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;

use super::render;
use crate::amc::simulator::{self, SimConfig, Simulator};
use crate::collect::backfill;
use crate::journal::Journal;
use crate::schedule::Schedule;
use crate::settings::Settings;
use crate::sync::Outcome as SyncOutcome;
use crate::telemetry::progress;
use crate::throwaway::{self, Cluster, ConfigFile};

const EXAMPLE_SCHEDULE: &str = include_str!("../../schedules/example.toml");

pub async fn run(dir: &Path) -> anyhow::Result<bool> {
    prepare(dir)?;
    let sim = simulator::spawn(Simulator::new(SimConfig {
        execution_duration: Duration::from_secs(1),
        ..SimConfig::default()
    }))
    .await
    .context("cannot start the AMC simulator")?;
    println!("AMC simulator listening on {}", sim.base_url);

    let config_path = dir.join("config.toml");
    let config = ConfigFile::for_simulator(&sim)
        .advertiser("DEMOADVERTISER")
        .poll_interval(Duration::from_millis(200));
    std::fs::write(
        &config_path,
        format!(
            "# Written by `chronicle demo`: points at the simulator that ran the demo.\n{}",
            config.render()
        ),
    )
    .with_context(|| format!("cannot write {}", config_path.display()))?;
    let mut settings = Settings::load(&config_path, true)?;

    let cluster = start_postgres().await;
    if let Some(cluster) = &cluster {
        let url = cluster.create_database("chronicle_demo").await?;
        println!("throwaway PostgreSQL cluster on port {}", cluster.port());
        settings.postgres.url = SecretString::from(url);
    }

    let today = chrono::Utc::now().date_naive();
    let schedule = Schedule::from_file(&settings.schedules.dir.join("example.toml"), today)?;
    let journal = Journal::open(&settings.journal.path)?;
    println!(
        "backfilling schedule `{}` ({}), executions last about a second...",
        schedule.name,
        schedule.file.display()
    );
    let summary = backfill::run(
        &settings,
        &journal,
        sim.simulator.clone(),
        &schedule,
        "demo",
        &progress::bar(&schedule.name, "weeks"),
    )
    .await?;
    let status = journal.status()?;
    let rows: i64 = status.collections.iter().map(|c| c.rows_collected).sum();

    println!();
    print!("{}", render::backfill(&schedule.name, &summary));
    println!("weeks completed:      {}", summary.report.completed.len());
    println!("AMC executions:       {}", status.executions);
    println!("rows collected:       {rows}");
    println!("updates pending sync: {}", summary.pending_sync);
    if matches!(summary.sync, SyncOutcome::NotConfigured) {
        println!(
            "(no PostgreSQL server binaries found: sync was skipped; install the Debian package `postgresql` to see it)"
        );
    }
    println!("journal:              {}", settings.journal.path.display());
    if let Some(week) = summary.report.completed.last() {
        println!("\nTry next:");
        println!(
            "  chronicle --config {} lineage {week}",
            config_path.display()
        );
        println!("  chronicle --config {} status", config_path.display());
    }
    sim.stop().await;
    drop(cluster);
    Ok(summary.report.failed.is_empty())
}

/// A fresh folder each time: the simulator is new, so an old journal's
/// executions would not exist in it.
fn prepare(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot clear the demo folder {}", dir.display()))?;
    }
    let schedules = dir.join("schedules");
    std::fs::create_dir_all(&schedules)
        .with_context(|| format!("cannot create {}", schedules.display()))?;
    std::fs::write(schedules.join("example.toml"), EXAMPLE_SCHEDULE)
        .context("cannot write the example schedule")?;
    Ok(())
}

async fn start_postgres() -> Option<Cluster> {
    if !throwaway::binaries_available() {
        return None;
    }
    match tokio::task::spawn_blocking(Cluster::start).await {
        Ok(Ok(cluster)) => Some(cluster),
        Ok(Err(e)) => {
            println!("could not start a throwaway PostgreSQL cluster ({e}); sync will be skipped");
            None
        }
        Err(e) => {
            println!("could not start a throwaway PostgreSQL cluster ({e}); sync will be skipped");
            None
        }
    }
}
