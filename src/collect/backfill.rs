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
use crate::collect::attach::{self, PreflightError};
use crate::collect::runner::{RunError, RunReport, Runner};
use crate::journal::events::ScheduleFiring;
use crate::journal::{Attached, Journal, JournalError, Plan};
use crate::schedule::Schedule;
use crate::schedule::firing::Reason;
use crate::settings::Settings;
use crate::sync::Outcome as SyncOutcome;
use crate::sync::reconciler;

/// Why a backfill did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Run(#[from] RunError),
    /// Postgres cannot take the rows, or cannot be asked: nothing was
    /// submitted.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

#[derive(Debug)]
pub struct Summary {
    /// The application collection the schedule attached to, this run.
    pub attached: Option<Attached>,
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
) -> Result<Summary, BackfillError> {
    let _lock = journal.lock_runner(triggered_by)?;
    let recovering = journal.record_runner_start(triggered_by)?;
    // Before anything is sent to AMC: can Postgres take the rows, and does
    // the application already collect this schedule (then attach)?
    let mut preflight = attach::preflight(settings, journal, &[schedule]).await?;
    let attached = preflight.attached.pop().map(|(_, attached)| attached);
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
    let runner = Runner::new(api, journal.clone(), settings);
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
    let sync = match settings.postgres_target() {
        None => SyncOutcome::NotConfigured,
        Some(target) => {
            match reconciler::sync_once(journal, &target, settings.reconciler.batch_size).await {
                Ok(report) => SyncOutcome::Synced(report),
                Err(e) => SyncOutcome::Failed(e.to_string()),
            }
        }
    };
    let pending_sync = journal.pending_count()?;
    Ok(Summary {
        attached,
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
                let body = serde_json::to_string_pretty(&schedule.request(item.week_start))
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
