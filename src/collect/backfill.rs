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
use crate::schedule::firing::Reason;
use crate::schedule::{Schedule, week};
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
    #[error(transparent)]
    Range(#[from] RangeError),
}

impl BackfillError {
    /// What the person asked for cannot be done: exit code 2.
    pub fn is_bad_input(&self) -> bool {
        match self {
            BackfillError::Preflight(e) => e.is_bad_input(),
            BackfillError::Range(_) => true,
            BackfillError::Run(_) | BackfillError::Journal(_) => false,
        }
    }
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

/// A `--from`/`--to` range that cannot be collected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RangeError {
    #[error("--from {from} is after --to {to}")]
    Reversed { from: NaiveDate, to: NaiveDate },
    #[error(
        "--to {to}: its week is not due yet (AMC data lags `data_lag_days`); the latest due week of `{schedule}` starts {latest}"
    )]
    NotDue {
        schedule: String,
        to: NaiveDate,
        latest: NaiveDate,
    },
}

/// Checks a range against the schedule's week rules for `today`.
pub fn check_range(
    schedule: &Schedule,
    today: NaiveDate,
    (from, to): (NaiveDate, NaiveDate),
) -> Result<(NaiveDate, NaiveDate), RangeError> {
    if from > to {
        return Err(RangeError::Reversed { from, to });
    }
    let latest = week::latest_due(today, schedule.week_start, schedule.data_lag_days);
    if week::align(to, schedule.week_start) > latest {
        return Err(RangeError::NotDue {
            schedule: schedule.name.clone(),
            to,
            latest,
        });
    }
    Ok((from, to))
}

pub async fn run<A: Api + Clone + 'static>(
    settings: &Settings,
    journal: &Journal,
    api: A,
    schedule: &Schedule,
    triggered_by: &str,
    progress: &ProgressBar,
) -> Result<Summary, BackfillError> {
    run_range(
        settings,
        journal,
        api,
        schedule,
        None,
        triggered_by,
        progress,
    )
    .await
}

/// `run`, for the weeks of `range` only when it is set (`backfill --from
/// --to`); the range is checked first (exit 2 when reversed or not due).
pub async fn run_range<A: Api + Clone + 'static>(
    settings: &Settings,
    journal: &Journal,
    api: A,
    schedule: &Schedule,
    range: Option<(NaiveDate, NaiveDate)>,
    triggered_by: &str,
    progress: &ProgressBar,
) -> Result<Summary, BackfillError> {
    let today = Utc::now().with_timezone(&schedule.timezone).date_naive();
    if let Some(range) = range {
        check_range(schedule, today, range)?;
    }
    let _lock = journal.lock_runner(triggered_by)?;
    let recovering = journal.record_runner_start(triggered_by)?;
    // Before anything is sent to AMC: can Postgres take the rows, and does
    // the application already collect this schedule (then attach)?
    let mut preflight = attach::preflight(settings, journal, &[schedule]).await?;
    let attached = preflight.attached.pop().map(|(_, attached)| attached);
    if recovering > 0 {
        tracing::info!(
            attempts = recovering,
            "resuming attempts an earlier process left open"
        );
    }
    let runner = Runner::new(api, journal.clone(), settings);
    let command = match range {
        None => triggered_by.to_owned(),
        Some((from, to)) => format!("{triggered_by} --from {from} --to {to}"),
    };
    let (plan, report) = collect_now(
        journal,
        &runner,
        schedule,
        range,
        triggered_by,
        &command,
        progress,
    )
    .await?;
    progress.finish_and_clear();
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

/// A person's run of one collection now, by a process that holds the
/// runner lock (`backfill`, or the daemon for a request): journals the
/// manual firing (pause does not stop a person), plans and runs every due
/// week or those of `range`, and journals how the run ended.
pub async fn collect_now<A: Api + Clone + 'static>(
    journal: &Journal,
    runner: &Runner<A>,
    schedule: &Schedule,
    range: Option<(NaiveDate, NaiveDate)>,
    triggered_by: &str,
    command: &str,
    progress: &ProgressBar,
) -> Result<(Plan, RunReport), BackfillError> {
    journal.record_firing(ScheduleFiring {
        command: Some(command.to_owned()),
        ..ScheduleFiring::new(&schedule.name, Reason::Manual, Utc::now())
    })?;
    let today = Utc::now().with_timezone(&schedule.timezone).date_naive();
    let (plan, report) = match range {
        None => {
            runner
                .collect(schedule, today, triggered_by, progress)
                .await?
        }
        Some(range) => {
            runner
                .collect_range(schedule, today, range, triggered_by, progress)
                .await?
        }
    };
    report.record(journal, &schedule.name)?;
    Ok((plan, report))
}

/// `backfill --dry-run`: the weeks a run would work on today and the create
/// body each new submission would send. Nothing is sent and the journal is
/// left as it was: planning runs on a copy of it (or on an empty journal
/// when there is none yet).
pub fn dry_run(
    settings: &Settings,
    schedule: &Schedule,
    today: NaiveDate,
    range: Option<(NaiveDate, NaiveDate)>,
) -> Result<String, BackfillError> {
    if let Some(range) = range {
        check_range(schedule, today, range)?;
    }
    let scratch = tempfile::tempdir().map_err(|e| JournalError::Invalid {
        path: settings.journal.path.clone(),
        what: format!("cannot make a scratch folder for the dry run: {e}"),
    })?;
    let copy = scratch.path().join("dry-run.db");
    if settings.journal.path.exists() {
        Journal::open(&settings.journal.path)?.copy_to(&copy)?;
    }
    let plan = match range {
        None => Journal::open(&copy)?.plan(schedule, today)?,
        Some(range) => {
            let (reaching, first, last) = schedule.reaching(range);
            let mut plan = Journal::open(&copy)?.plan(&reaching, today)?;
            plan.work
                .retain(|item| (first..=last).contains(&item.week_start));
            plan
        }
    };

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
