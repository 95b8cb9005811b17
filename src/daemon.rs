//! `chronicle run`: fires each schedule's cron (tokio-cron-scheduler), runs
//! each firing's due weeks, and drains the outbox every reconciler interval,
//! until the shutdown future resolves.
//!
//! Owns firing, overlap and shutdown. What a firing does is the runner's;
//! what reaches Postgres is the reconciler's.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use indicatif::ProgressBar;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::amc::Api;
use crate::journal::Journal;
use crate::reconciler;
use crate::runner::{Limits, Runner};
use crate::schedule::Schedule;
use crate::settings::Settings;

/// Why a collection run started, as recorded in `triggered_by`.
const FIRED: &str = "schedule";
const RESUMED: &str = "resume";

pub async fn run<A: Api + Clone + 'static>(
    settings: Settings,
    schedules: Vec<Schedule>,
    journal: Journal,
    api: A,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let _lock = journal.lock_runner("run")?;
    let recovering = journal.record_runner_start("run")?;
    let runner = Arc::new(Runner::new(
        api,
        journal.clone(),
        crate::amc::client::http_client(),
        settings.amc.poll_interval,
        Limits::new(settings.amc.max_concurrent_executions),
    ));
    let (fire, mut fired) = mpsc::channel::<(usize, &'static str)>(64);
    let mut scheduler = JobScheduler::new()
        .await
        .context("cannot start the cron scheduler")?;
    for (index, schedule) in schedules.iter().enumerate() {
        let fire = fire.clone();
        let job = Job::new_async_tz(schedule.cron.as_str(), schedule.timezone, move |_, _| {
            let fire = fire.clone();
            Box::pin(async move {
                // Full channel: a firing is already queued for the run.
                let _ = fire.try_send((index, FIRED));
            })
        })
        .with_context(|| {
            format!(
                "schedule {}: cannot schedule cron `{}`",
                schedule.file.display(),
                schedule.cron
            )
        })?;
        scheduler.add(job).await.context("cannot add a cron job")?;
    }
    // Attempts an earlier process left open are resumed now, not at the
    // next firing: their executions are running in AMC meanwhile.
    if recovering > 0 {
        tracing::info!(
            attempts = recovering,
            "resuming attempts an earlier process left open"
        );
    }
    for (index, schedule) in schedules.iter().enumerate() {
        let collection = crate::identity::collection_id(&schedule.name);
        if journal
            .work(collection)?
            .iter()
            .any(|w| w.open_attempt.is_some())
        {
            let _ = fire.try_send((index, RESUMED));
        }
    }
    scheduler
        .start()
        .await
        .context("cannot start the cron scheduler")?;
    tracing::info!(schedules = schedules.len(), "daemon started");

    let (stop_sync, sync_stopped) = watch::channel(false);
    let reconciler = settings.postgres_url().map(|url| {
        let mut stopped = sync_stopped.clone();
        tokio::spawn(reconciler::run(
            journal.clone(),
            url.to_owned(),
            settings.postgres_tls(),
            settings.reconciler.interval,
            settings.reconciler.batch_size,
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            },
        ))
    });

    let schedules = Arc::new(schedules);
    let mut busy = HashSet::new();
    let mut runs = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some((index, reason)) = fired.recv() => {
                let name = &schedules[index].name;
                if !busy.insert(index) {
                    tracing::info!(schedule = %name, "firing skipped: the previous run of this collection is still going");
                    continue;
                }
                tracing::info!(schedule = %name, reason, "collection run started");
                let runner = runner.clone();
                let schedules = schedules.clone();
                runs.spawn(async move {
                    let schedule = &schedules[index];
                    let today = Utc::now().with_timezone(&schedule.timezone).date_naive();
                    let result = runner.collect(schedule, today, reason, &ProgressBar::hidden()).await;
                    match result {
                        Ok((_, report)) => tracing::info!(schedule = %schedule.name, completed = report.completed.len(), failed = report.failed.len(), "collection run finished"),
                        Err(e) => tracing::error!(schedule = %schedule.name, error = %e, "collection run stopped"),
                    }
                    index
                });
            }
            Some(done) = runs.join_next() => {
                if let Ok(index) = done {
                    busy.remove(&index);
                }
            }
        }
    }

    tracing::info!(
        "shutting down: live AMC executions keep running and are resumed at the next start"
    );
    let _ = scheduler.shutdown().await;
    // Every journal write is one synchronous transaction, so stopping the
    // runs at an await point never leaves a half-written record.
    runs.shutdown().await;
    let _ = stop_sync.send(true);
    if let Some(reconciler) = reconciler {
        let _ = reconciler.await;
    }
    if let Some(url) = settings.postgres_url() {
        match reconciler::sync_once(
            &journal,
            url,
            &settings.postgres_tls(),
            settings.reconciler.batch_size,
        )
        .await
        {
            Ok(report) => tracing::info!(rows = report.rows, "final sync done"),
            Err(e) => {
                tracing::warn!(error = %e, "final sync failed; the journal keeps the updates")
            }
        }
    }
    Ok(())
}
