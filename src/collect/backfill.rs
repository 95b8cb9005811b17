//! A one-shot collection: plan and run every due week of one schedule now,
//! then sync to Postgres when it is configured. Shared by `backfill` and
//! `demo`.
//!
//! Owns the sequence and its summary; Postgres being away is reported, not
//! treated as a failure (the journal keeps every change).

use std::fmt::Write as _;

use chrono::{NaiveDate, Utc};
use indicatif::ProgressBar;

use crate::amc::Api;
use crate::collect::runner::{Limits, RunError, RunReport, Runner, request_for};
use crate::journal::events::ScheduleFiring;
use crate::journal::{Journal, JournalError, Plan};
use crate::schedule::Schedule;
use crate::schedule::firing::Reason;
use crate::settings::Settings;
use crate::sync::Outcome as SyncOutcome;
use crate::sync::reconciler;

#[derive(Debug)]
pub struct Summary {
    pub plan: Plan,
    pub report: RunReport,
    pub sync: SyncOutcome,
    pub pending_sync: i64,
}

pub async fn run<A: Api + Clone + 'static>(
    settings: &Settings,
    journal: &Journal,
    api: A,
    schedule: &Schedule,
    triggered_by: &str,
    progress: &ProgressBar,
) -> Result<Summary, RunError> {
    let _lock = journal.lock_runner(triggered_by)?;
    let recovering = journal.record_runner_start(triggered_by)?;
    // A person asked: journaled like the daemon's decisions, pause or not.
    journal.record_firing(ScheduleFiring {
        command: Some(triggered_by.to_owned()),
        ..ScheduleFiring::new(&schedule.name, Reason::Manual, Utc::now())
    })?;
    if recovering > 0 {
        tracing::info!(
            attempts = recovering,
            "resuming attempts an earlier process left open"
        );
    }
    let runner = Runner::new(
        api,
        journal.clone(),
        crate::amc::client::http_client(),
        settings.amc.poll_interval,
        Limits::new(settings.amc.max_concurrent_executions),
    )
    .with_settings(settings);
    let today = Utc::now().with_timezone(&schedule.timezone).date_naive();
    let (plan, report) = runner
        .collect(schedule, today, triggered_by, progress)
        .await?;
    progress.finish_and_clear();
    journal.record_run_finished(
        &schedule.name,
        report.outcome(),
        report.completed.len(),
        report.failed.len(),
        None,
    )?;
    let sync = match settings.postgres_url() {
        None => SyncOutcome::NotConfigured,
        Some(url) => {
            match reconciler::sync_once(
                journal,
                url,
                &settings.postgres_tls(),
                settings.reconciler.batch_size,
            )
            .await
            {
                Ok(report) => SyncOutcome::Synced(report),
                Err(e) => SyncOutcome::Failed(e.to_string()),
            }
        }
    };
    let pending_sync = journal.pending_count()?;
    Ok(Summary {
        plan,
        report,
        sync,
        pending_sync,
    })
}

/// `backfill --dry-run`: the weeks a run would work on today and the create
/// body each new submission would send. Nothing is sent and the journal is
/// left as it was: planning runs on a copy of it (or on an empty journal
/// when there is none yet).
pub fn dry_run(
    settings: &Settings,
    schedule: &Schedule,
    today: NaiveDate,
) -> Result<String, JournalError> {
    let scratch = tempfile::tempdir().map_err(|e| JournalError::Invalid {
        path: settings.journal.path.clone(),
        what: format!("cannot make a scratch folder for the dry run: {e}"),
    })?;
    let copy = scratch.path().join("dry-run.db");
    if settings.journal.path.exists() {
        Journal::open(&settings.journal.path)?.copy_to(&copy)?;
    }
    let plan = Journal::open(&copy)?.plan(schedule, today)?;
    let resumed = plan
        .work
        .iter()
        .filter(|w| w.open_attempt.is_some())
        .count();
    let mut text = format!(
        "dry run of {}: {} weeks would be submitted, {resumed} resumed; nothing was sent to AMC\n",
        schedule.name,
        plan.work.len() - resumed,
    );
    for item in &plan.work {
        match &item.open_attempt {
            Some(open) => {
                let execution = open.amc_execution_id.as_deref().unwrap_or("not known yet");
                let _ = writeln!(
                    text,
                    "week {}: resume attempt {} (AMC execution {execution})",
                    item.week_start, open.id
                );
            }
            None => {
                let body = serde_json::to_string_pretty(&request_for(schedule, item.week_start))
                    .unwrap_or_default();
                let _ = writeln!(
                    text,
                    "week {}: POST /amc/reporting/{}/workflowExecutions\n{body}",
                    item.week_start, schedule.instance_id
                );
            }
        }
    }
    Ok(text)
}
