//! The operations a person asks for by name (`rerun`, `backfill`,
//! `cancel`), carried out by whichever process holds the runner lock: the
//! command itself when no daemon runs, or the running daemon for a request
//! (then with its own runner, so its concurrency limits hold).
//!
//! Owns what each operation does and the words of its outcome. Waiting for
//! a request and printing is the command's; picking requests up is the
//! daemon's.

use std::fmt::Write as _;

use chrono::{NaiveDate, Utc};
use indicatif::ProgressBar;

use crate::amc::Api;
use crate::collect::attach;
use crate::collect::backfill::{self, BackfillError};
use crate::collect::cancel::{self, CancelError};
use crate::collect::runner::{RunReport, Runner};
use crate::journal::events::{Operation, RequestOutcome, ScheduleFiring};
use crate::journal::{Journal, RerunAsk};
use crate::schedule::firing::Reason;
use crate::schedule::{self, Schedule, week};
use crate::settings::Settings;

/// How an operation ended, as the command prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub outcome: RequestOutcome,
    pub message: String,
}

impl Done {
    fn refused(why: impl std::fmt::Display) -> Done {
        Done {
            outcome: RequestOutcome::Refused,
            message: why.to_string(),
        }
    }

    fn failed(why: impl std::fmt::Display) -> Done {
        Done {
            outcome: RequestOutcome::Failed,
            message: why.to_string(),
        }
    }
}

/// Who asked, for the journal.
#[derive(Debug, Clone, Default)]
pub struct Asker {
    /// The OS user.
    pub by: Option<String>,
    /// The daemon request it is, if it is one.
    pub request: Option<i64>,
}

/// Carries `operation` out with `runner`, in a process that holds the
/// runner lock. Never fails as a function: a refusal or failure is the
/// outcome, in words.
pub async fn carry_out<A: Api + Clone + 'static>(
    operation: &Operation,
    settings: &Settings,
    journal: &Journal,
    runner: &Runner<A>,
    asker: &Asker,
) -> Done {
    match operation {
        Operation::Rerun {
            schedule,
            week,
            reason,
        } => rerun(settings, journal, runner, schedule, *week, reason, asker).await,
        Operation::Backfill { schedule, range } => {
            backfill(settings, journal, runner, schedule, *range).await
        }
        Operation::Cancel { key, fail } => {
            match cancel::cancel_in(journal, runner.api(), key, *fail, runner.cancelling()).await {
                Ok(done) => Done {
                    outcome: RequestOutcome::Completed,
                    message: done.describe(),
                },
                Err(e @ CancelError::Journal(_)) | Err(e @ CancelError::Amc { .. }) => {
                    Done::failed(e)
                }
                Err(e) => Done::refused(e),
            }
        }
    }
}

/// The refusal an operation would meet, found without running anything:
/// the daemon answers with it at once instead of waiting for a busy
/// collection first. `None` when it may well go ahead.
pub fn refusal(operation: &Operation, settings: &Settings, journal: &Journal) -> Option<Done> {
    match operation {
        Operation::Rerun { schedule, week, .. } => {
            let schedule = match find(settings, schedule) {
                Ok(schedule) => schedule,
                Err(done) => return Some(done),
            };
            let week_start = week::align(*week, schedule.week_start);
            match journal.rerun_refusal(&schedule.name, week_start) {
                Ok(refusal) => refusal.map(Done::refused),
                Err(_) => None,
            }
        }
        Operation::Backfill {
            schedule,
            range: Some(range),
        } => {
            let schedule = match find(settings, schedule) {
                Ok(schedule) => schedule,
                Err(done) => return Some(done),
            };
            let today = Utc::now().with_timezone(&schedule.timezone).date_naive();
            backfill::check_range(&schedule, today, *range)
                .err()
                .map(Done::refused)
        }
        Operation::Backfill { range: None, .. } | Operation::Cancel { .. } => None,
    }
}

fn find(settings: &Settings, name: &str) -> Result<Schedule, Done> {
    schedule::find(&settings.schedules.dir, name, Utc::now().date_naive()).map_err(Done::refused)
}

async fn rerun<A: Api + Clone + 'static>(
    settings: &Settings,
    journal: &Journal,
    runner: &Runner<A>,
    name: &str,
    day: NaiveDate,
    reason: &str,
    asker: &Asker,
) -> Done {
    let schedule = match find(settings, name) {
        Ok(schedule) => schedule,
        Err(done) => return done,
    };
    let week_start = week::align(day, schedule.week_start);
    let ask = RerunAsk {
        by: asker.by.clone(),
        reason: reason.to_owned(),
        request: asker.request,
    };
    let item = match journal.request_rerun(&schedule.name, week_start, &ask) {
        Ok(Ok(item)) => item,
        Ok(Err(refusal)) => return Done::refused(refusal),
        Err(e) => return Done::failed(e),
    };
    let command = format!("rerun {} {week_start}", schedule.name);
    let ran = async {
        journal.record_firing(ScheduleFiring {
            command: Some(command.clone()),
            ..ScheduleFiring::new(&schedule.name, Reason::Manual, Utc::now())
        })?;
        let report = runner
            .run(&schedule, vec![item], "rerun", &ProgressBar::hidden())
            .await?;
        report.record(journal, &schedule.name)?;
        anyhow::Ok(report)
    }
    .await;
    let report = match ran {
        Ok(report) => report,
        Err(e) => {
            return Done::failed(format!(
                "week {week_start} of `{}` was set to run again, and the run stopped: {e:#}",
                schedule.name
            ));
        }
    };
    let line = journal
        .weeks_of(&schedule.name)
        .ok()
        .flatten()
        .and_then(|weeks| {
            weeks
                .into_iter()
                .find(|w| w.week_start == week_start.to_string())
        });
    match report.failed.first() {
        None => Done {
            outcome: RequestOutcome::Completed,
            message: format!(
                "week {week_start} of `{}` re-run: completed, AMC execution {}, {} rows; the earlier attempt is kept, marked superseded (`chronicle lineage {week_start}`)",
                schedule.name,
                line.as_ref()
                    .and_then(|w| w.amc_execution_id.clone())
                    .unwrap_or_else(|| "-".into()),
                line.as_ref()
                    .and_then(|w| w.record_count)
                    .map_or("-".into(), |n| n.to_string()),
            ),
        },
        Some((_, why)) => Done::failed(format!(
            "week {week_start} of `{}` re-run failed: {why}",
            schedule.name
        )),
    }
}

async fn backfill<A: Api + Clone + 'static>(
    settings: &Settings,
    journal: &Journal,
    runner: &Runner<A>,
    name: &str,
    range: Option<(NaiveDate, NaiveDate)>,
) -> Done {
    let schedule = match find(settings, name) {
        Ok(schedule) => schedule,
        Err(done) => return done,
    };
    let today = Utc::now().with_timezone(&schedule.timezone).date_naive();
    if let Some(range) = range
        && let Err(e) = backfill::check_range(&schedule, today, range)
    {
        return Done::refused(e);
    }
    // A schedule new to the journal first attaches to the application's
    // collection, if it has one, as the daemon's own firings do.
    match journal.collection_of(&schedule.name) {
        Ok(Some(_)) => {}
        Ok(None) => match attach::preflight(settings, journal, &[&schedule]).await {
            Ok(_) => {}
            Err(e) if e.is_bad_input() => return Done::refused(e),
            Err(e) => return Done::failed(e),
        },
        Err(e) => return Done::failed(e),
    }
    let command = match range {
        None => format!("backfill {}", schedule.name),
        Some((from, to)) => format!("backfill {} --from {from} --to {to}", schedule.name),
    };
    let collected = backfill::collect_now(
        journal,
        runner,
        &schedule,
        range,
        "backfill",
        &command,
        &ProgressBar::hidden(),
    )
    .await;
    match collected {
        Ok((_, report)) => summary(&command, &report),
        Err(e @ BackfillError::Range(_)) => Done::refused(e),
        Err(e) => Done::failed(e),
    }
}

/// `backfill`'s outcome in words: counts, and each week that failed.
fn summary(command: &str, report: &RunReport) -> Done {
    let mut message = format!(
        "{command}: {} weeks completed, {} failed",
        report.completed.len(),
        report.failed.len()
    );
    for (week, why) in &report.failed {
        let _ = write!(message, "\n  week {week}: {why}");
    }
    Done {
        outcome: if report.failed.is_empty() {
            RequestOutcome::Completed
        } else {
            RequestOutcome::Failed
        },
        message,
    }
}
