//! Sees each due week of a collection through AMC: journal the intent,
//! submit, journal the execution id, poll, fetch and check the result,
//! journal the outcome; retry failed weeks as new attempts.
//!
//! Owns the per-instance concurrency limit and the adoption of executions
//! whose create answer was lost. Never touches Postgres (the reconciler
//! does) and never decides which weeks are due (planning does).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use indicatif::ProgressBar;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::amc::adoption::{self, SentWindow, Verdict};
use crate::amc::result::{FetchError, FetchOptions};
use crate::amc::{self, Api, ApiError, CreateExecution, ListQuery, Status, listing};
use crate::journal::events::RunOutcome;
use crate::journal::{Journal, JournalError, OpenAttempt, Phase, Plan, WorkItem};
use crate::schedule::Schedule;
use crate::settings::Settings;

/// A download that fails is tried this many times before the week is left
/// for the next run (the attempt stays open, nothing is lost).
const DOWNLOAD_TRIES: u32 = 5;

/// A result AMC says is "unavailable for download" yet is asked for this
/// many times, a poll interval apart: it normally appears within moments.
const RESULT_WAITS: u32 = 100;

/// Polls answered with something unreadable in a row before the week is
/// left for the next run: one garbled answer is a gateway's hiccup.
const MALFORMED_POLLS: u32 = 5;

/// Executions chronicle did not start are looked for this far back: AMC
/// ends every execution well within it.
const FOREIGN_LOOKBACK: chrono::Duration = chrono::Duration::days(2);

/// Abandoned attempts cost nothing in AMC, so they do not use up a week's
/// retries; this bound only stops a create that never takes from looping.
const ABANDON_LIMIT: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Without a token nothing can be submitted: stop rather than burn
    /// every week's retries on it.
    #[error("cannot authenticate with AMC: {0}")]
    Auth(ApiError),
}

/// How the weeks of one run ended.
#[derive(Debug, Default, Clone)]
pub struct RunReport {
    pub completed: Vec<NaiveDate>,
    /// Weeks that failed after their retries, or whose state could not be
    /// settled this time, with the reason.
    pub failed: Vec<(NaiveDate, String)>,
}

impl RunReport {
    /// Journals how the run of `schedule` ended (`schedule.run_finished`).
    pub fn record(&self, journal: &Journal, schedule: &str) -> Result<i64, JournalError> {
        journal.record_run_finished(
            schedule,
            self.outcome(),
            self.completed.len(),
            self.failed.len(),
            None,
        )
    }

    /// The run's outcome as `schedule.run_finished` records it.
    pub fn outcome(&self) -> RunOutcome {
        if self.failed.is_empty() {
            RunOutcome::Completed
        } else {
            RunOutcome::Failed
        }
    }
}

/// How one attempt ended.
enum Outcome {
    Succeeded,
    Failed {
        status: Status,
        message: String,
        /// False when a new attempt would fail the same way (AMC refused
        /// the request itself, the result is over the size limit).
        retryable: bool,
    },
    /// AMC has no execution for the intent: nothing ran, nothing was paid.
    Abandoned(String),
    /// Not known how it ended; the attempt stays open for the next run so
    /// it is resumed, never submitted twice (I2).
    Unresolved(String),
    /// A person cancelled it in this process: the cancel journals it.
    Cancelled(String),
}

/// Attempts a person is cancelling in this process (a `cancel` the daemon
/// carries out): the week driving one stops when AMC reports it CANCELLED
/// and leaves the journaling to the cancel, instead of retrying it as a
/// failure. An id stays once added: the journal says the rest.
#[derive(Clone, Default)]
pub struct Cancelling(Arc<Mutex<HashSet<uuid::Uuid>>>);

impl Cancelling {
    /// Marks `attempt` as being cancelled, before AMC is asked.
    pub fn begin(&self, attempt: uuid::Uuid) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(attempt);
    }

    /// AMC refused the cancel: the week goes on as before.
    pub fn abandon(&self, attempt: uuid::Uuid) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&attempt);
    }

    fn contains(&self, attempt: uuid::Uuid) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&attempt)
    }
}

/// Live-execution slots per AMC instance, shared by every run of a process.
#[derive(Clone)]
pub struct Limits {
    per_instance: usize,
    instances: Arc<Mutex<HashMap<String, Arc<Instance>>>>,
}

/// One AMC instance's share of `max_concurrent_executions`.
struct Instance {
    /// One permit per week being driven: its execution is live in AMC, or
    /// is about to be submitted.
    slots: Arc<Semaphore>,
    /// Slot holders still waiting for room beside executions others run
    /// (`count_foreign_executions`): they hold a slot but have nothing live,
    /// so they must not count as ours, or waiting weeks would keep each
    /// other out for as long as a foreign execution runs.
    waiting: AtomicUsize,
    /// Makes counting and taking the last room one step, so two weeks
    /// cannot both see room for one.
    gate: tokio::sync::Mutex<()>,
}

impl Limits {
    pub fn new(per_instance: usize) -> Limits {
        Limits {
            per_instance,
            instances: Arc::default(),
        }
    }

    fn of(&self, instance_id: &str) -> Arc<Instance> {
        let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        instances
            .entry(instance_id.to_owned())
            .or_insert_with(|| {
                Arc::new(Instance {
                    slots: Arc::new(Semaphore::new(self.per_instance)),
                    waiting: AtomicUsize::new(0),
                    gate: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }
}

pub struct Runner<A> {
    api: A,
    journal: Journal,
    /// For presigned result URLs, which take no API headers.
    http: reqwest::Client,
    poll_interval: Duration,
    limits: Limits,
    /// The `[amc]` choices beyond polling and limits.
    options: RunOptions,
    /// Attempts being cancelled in this process.
    cancelling: Cancelling,
}

/// What the settings say about foreign executions, creates and results.
#[derive(Debug, Clone)]
struct RunOptions {
    /// `amc.count_foreign_executions`.
    count_foreign: bool,
    /// `amc.max_result_bytes`.
    max_result_bytes: u64,
    /// `amc.results_dir`.
    results_dir: Option<PathBuf>,
    /// `postgres.result_rows_limit`.
    result_rows_limit: usize,
    /// The longest a create call may take (`AmcSettings::create_span`): a
    /// POST leaves within this of its intent, which bounds adoption.
    create_span: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            count_foreign: false,
            max_result_bytes: u64::MAX,
            results_dir: None,
            result_rows_limit: crate::settings::DEFAULT_RESULT_ROWS_LIMIT,
            create_span: Duration::from_secs(600),
        }
    }
}

impl<A: Api + Clone + 'static> Runner<A> {
    /// A runner as `[amc]` (polling, the per-instance limit, foreign
    /// executions, the create call's bound, result limits and folder) and
    /// `postgres.result_rows_limit` configure it: the one way `backfill`
    /// and the daemon make theirs.
    pub fn new(api: A, journal: Journal, settings: &Settings) -> Runner<A> {
        let amc = &settings.amc;
        Runner {
            api,
            journal,
            http: crate::amc::client::http_client(),
            poll_interval: amc.poll_interval,
            limits: Limits::new(amc.max_concurrent_executions),
            options: RunOptions {
                count_foreign: amc.count_foreign_executions,
                max_result_bytes: amc.max_result_bytes,
                results_dir: amc.results_dir.clone(),
                result_rows_limit: settings.postgres.result_rows_limit,
                create_span: amc.create_span(),
            },
            cancelling: Cancelling::default(),
        }
    }

    /// The attempts this runner's weeks leave to a cancel in progress.
    pub fn cancelling(&self) -> &Cancelling {
        &self.cancelling
    }

    /// The API the runner calls (a cancel in the daemon uses the same one).
    pub fn api(&self) -> &A {
        &self.api
    }

    /// Like `collect`, for the weeks that hold a day of `from..=to` only:
    /// the collection's start moves back to `from`'s week when it began
    /// later (every week from there on is recorded, so the collection stays
    /// one unbroken run; the weeks outside the range wait for their run).
    pub async fn collect_range(
        &self,
        schedule: &Schedule,
        today: NaiveDate,
        (from, to): (NaiveDate, NaiveDate),
        triggered_by: &str,
        progress: &ProgressBar,
    ) -> Result<(Plan, RunReport), RunError> {
        let (reaching, first, last) = schedule.reaching((from, to));
        let plan = self.journal.plan(&reaching, today)?;
        let mut work: Vec<WorkItem> = plan
            .work
            .iter()
            .filter(|item| (first..=last).contains(&item.week_start))
            .cloned()
            .collect();
        progress.set_length(work.len() as u64);
        work.sort_by_key(|item| (item.open_attempt.is_none(), item.week_start));
        let report = self.run(schedule, work, triggered_by, progress).await?;
        Ok((plan, report))
    }

    /// Plans `schedule` in the journal for `today` and runs every week that
    /// needs work, resuming what an earlier process left open.
    pub async fn collect(
        &self,
        schedule: &Schedule,
        today: NaiveDate,
        triggered_by: &str,
        progress: &ProgressBar,
    ) -> Result<(Plan, RunReport), RunError> {
        let plan = self.journal.plan(schedule, today)?;
        progress.set_length(plan.work.len() as u64);
        // Recovery first: left-open attempts take the instance's slots (the
        // semaphore is fair) before any new week is submitted.
        let mut work = plan.work.clone();
        work.sort_by_key(|item| (item.open_attempt.is_none(), item.week_start));
        let report = self.run(schedule, work, triggered_by, progress).await?;
        Ok((plan, report))
    }

    /// Runs every week of `work` to an end, at most the instance's limit at
    /// a time, and reports which completed and which did not.
    pub async fn run(
        &self,
        schedule: &Schedule,
        work: Vec<WorkItem>,
        triggered_by: &str,
        progress: &ProgressBar,
    ) -> Result<RunReport, RunError> {
        let instance = self.limits.of(&schedule.instance_id);
        let mut tasks = JoinSet::new();
        for item in work {
            let week = WeekRun {
                api: self.api.clone(),
                journal: self.journal.clone(),
                http: self.http.clone(),
                poll_interval: self.poll_interval,
                instance_id: schedule.instance_id.clone(),
                request: schedule.request(item.week_start),
                budget: schedule.max_retries + 1,
                triggered_by: triggered_by.to_owned(),
                options: self.options.clone(),
                instance: instance.clone(),
                limit: self.limits.per_instance,
                cancelling: self.cancelling.clone(),
            };
            let slots = instance.slots.clone();
            let progress = progress.clone();
            tasks.spawn(async move {
                let _slot = slots.acquire_owned().await.expect("slots are never closed");
                let outcome = week.drive(item.week_id, item.open_attempt).await;
                progress.inc(1);
                (item.week_start, outcome)
            });
        }
        let mut report = RunReport::default();
        let mut fatal = None;
        while let Some(joined) = tasks.join_next().await {
            let (week_start, outcome) = joined.expect("week tasks do not panic");
            match outcome {
                Ok(None) => report.completed.push(week_start),
                Ok(Some(reason)) => report.failed.push((week_start, reason)),
                Err(e) => {
                    report.failed.push((week_start, e.to_string()));
                    fatal.get_or_insert(e);
                }
            }
        }
        report.completed.sort();
        report.failed.sort();
        match fatal {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// Everything one week's task needs, owned so it can run on its own task.
struct WeekRun<A> {
    api: A,
    journal: Journal,
    http: reqwest::Client,
    poll_interval: Duration,
    instance_id: String,
    request: CreateExecution,
    /// Attempts this run may still see fail for the week.
    budget: u32,
    triggered_by: String,
    /// Foreign counting, result limit and folder.
    options: RunOptions,
    /// The instance's slots, to know how many of ours are live.
    instance: Arc<Instance>,
    /// `amc.max_concurrent_executions`.
    limit: usize,
    /// Attempts a cancel in this process is ending.
    cancelling: Cancelling,
}

/// A week counted among those waiting for room, until it is admitted or
/// gives up (every way out, an error from AMC included).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<A: Api> WeekRun<A> {
    /// `Ok(None)` when the week completed, `Ok(Some(reason))` when it did
    /// not this time.
    async fn drive(
        mut self,
        week_id: uuid::Uuid,
        resumed: Option<OpenAttempt>,
    ) -> Result<Option<String>, RunError> {
        let (mut attempt, mut fresh) = match resumed {
            Some(open) => (open, false),
            None => {
                if let Err(reason) = self.wait_for_room().await? {
                    return Ok(Some(reason));
                }
                let intent =
                    self.journal
                        .record_intent(week_id, &self.request, &self.triggered_by)?;
                (intent, true)
            }
        };
        let mut abandoned = 0;
        loop {
            match self.see_through(&mut attempt, fresh).await? {
                Outcome::Succeeded => return Ok(None),
                Outcome::Cancelled(reason) => return Ok(Some(reason)),
                Outcome::Unresolved(reason) => {
                    // Open, never abandoned blind: journaled so `status`,
                    // `weeks` and /metrics can show it until a run settles it.
                    tracing::warn!(week = %week_id, attempt = %attempt.id, %reason, "attempt left open");
                    self.journal.record_unresolved(&attempt, &reason)?;
                    return Ok(Some(reason));
                }
                Outcome::Failed {
                    status,
                    message,
                    retryable,
                } => {
                    self.budget = self.budget.saturating_sub(1);
                    let retry = retryable && self.budget > 0;
                    tracing::warn!(week = %week_id, attempt = %attempt.id, %message, retry, "attempt failed");
                    self.journal
                        .record_failed(&attempt, status, &message, retry)?;
                    if !retry {
                        return Ok(Some(message));
                    }
                }
                Outcome::Abandoned(reason) => {
                    self.journal.record_abandoned(&attempt, &reason)?;
                    abandoned += 1;
                    if abandoned >= ABANDON_LIMIT {
                        return Ok(Some(reason));
                    }
                }
            }
            if let Err(reason) = self.wait_for_room().await? {
                return Ok(Some(reason));
            }
            attempt = self
                .journal
                .record_intent(week_id, &self.request, &self.triggered_by)?;
            fresh = true;
        }
    }

    /// With `amc.count_foreign_executions`, waits until our live weeks plus
    /// the executions others started in the instance leave room for one
    /// more. `Ok(Err(reason))` when AMC cannot be asked: nothing is
    /// submitted blind.
    async fn wait_for_room(&self) -> Result<Result<(), String>, RunError> {
        if !self.options.count_foreign {
            return Ok(Ok(()));
        }
        let instance = &self.instance;
        let waiting = Waiting::enter(&instance.waiting);
        loop {
            let gate = instance.gate.lock().await;
            let foreign = match self.foreign_live().await? {
                Ok(count) => count,
                Err(ApiError::Auth(why)) => return Err(RunError::Auth(ApiError::Auth(why))),
                Err(e) => {
                    return Ok(Err(format!(
                        "cannot count the executions others run in instance {}: {e}",
                        self.instance_id
                    )));
                }
            };
            // Slots held by weeks that are not waiting here: live, or
            // between this gate and their POST.
            let held = self.limit - instance.slots.available_permits();
            let ours = held - instance.waiting.load(Ordering::SeqCst);
            if ours + 1 + foreign <= self.limit {
                // Counted as ours before the next week may look.
                drop(waiting);
                drop(gate);
                return Ok(Ok(()));
            }
            drop(gate);
            tracing::info!(instance = %self.instance_id, ours, foreign, limit = self.limit, "instance full with executions chronicle did not start; waiting");
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// PENDING or RUNNING executions of the instance no attempt owns. The
    /// outer error is the journal's, the inner one AMC's.
    async fn foreign_live(&self) -> Result<Result<usize, ApiError>, JournalError> {
        let query = ListQuery {
            workflow_id: String::new(),
            min_creation_time: chrono::Utc::now() - FOREIGN_LOOKBACK,
            next_token: None,
        };
        let listed = match listing::list_all(&self.api, &self.instance_id, &query).await {
            Ok(listed) => listed,
            Err(e) => return Ok(Err(e)),
        };
        let mut count = 0;
        for execution in listed {
            let live = matches!(execution.status, Status::Pending | Status::Running);
            if live
                && self
                    .journal
                    .attempt_owning(&execution.workflow_execution_id)?
                    .is_none()
            {
                count += 1;
            }
        }
        Ok(Ok(count))
    }

    async fn see_through(
        &self,
        attempt: &mut OpenAttempt,
        fresh: bool,
    ) -> Result<Outcome, RunError> {
        if attempt.phase == Phase::Intent
            && let Some(outcome) = self.submit(attempt, fresh).await?
        {
            return Ok(outcome);
        }
        let Some(execution_id) = attempt.amc_execution_id.clone() else {
            return Ok(Outcome::Unresolved(format!(
                "attempt {} has no AMC execution id",
                attempt.id
            )));
        };
        let mut malformed = 0;
        loop {
            match attempt.amc_status {
                Some(Status::Succeeded) => return self.collect(attempt, &execution_id).await,
                Some(status) if status.is_terminal() => {
                    return Ok(Outcome::Failed {
                        status,
                        message: format!("AMC execution {execution_id} ended {}", status.as_str()),
                        retryable: true,
                    });
                }
                _ => {}
            }
            tokio::time::sleep(self.poll_interval).await;
            match self.api.get(&self.instance_id, &execution_id).await {
                Ok(execution) => {
                    malformed = 0;
                    if execution.status == Status::Cancelled && self.cancelling.contains(attempt.id)
                    {
                        return Ok(Outcome::Cancelled(format!(
                            "AMC execution {execution_id} cancelled by `chronicle cancel`"
                        )));
                    }
                    self.journal.record_status(attempt, execution.status)?;
                    if execution.status.is_terminal() && execution.status != Status::Succeeded {
                        let ended = format!(
                            "AMC execution {execution_id} ended {}",
                            execution.status.as_str()
                        );
                        return Ok(Outcome::Failed {
                            status: execution.status,
                            message: match execution.reason() {
                                Some(reason) => format!("{ended}: {reason}"),
                                None => ended,
                            },
                            retryable: true,
                        });
                    }
                }
                Err(e @ ApiError::Auth(_)) => return Err(RunError::Auth(e)),
                Err(e) if e.is_transient() => {
                    tracing::warn!(execution = %execution_id, error = %e, "polling failed; will poll again");
                }
                Err(e @ ApiError::Malformed(_)) if malformed + 1 < MALFORMED_POLLS => {
                    malformed += 1;
                    tracing::warn!(execution = %execution_id, error = %e, "unreadable answer to a poll; will poll again");
                }
                Err(e) => {
                    return Ok(Outcome::Unresolved(format!(
                        "cannot read AMC execution {execution_id}: {e}"
                    )));
                }
            }
        }
    }

    /// Sends the create call for a fresh intent, or settles an intent whose
    /// answer was lost. `None` means the attempt now has an execution id.
    async fn submit(
        &self,
        attempt: &mut OpenAttempt,
        fresh: bool,
    ) -> Result<Option<Outcome>, RunError> {
        if fresh {
            // Cut at the bound adoption relies on: a POST not sent by then is
            // never sent (the future is dropped), one sent was sent in time.
            let create = self.api.create(&self.instance_id, &attempt.request);
            let created = tokio::time::timeout(self.options.create_span, create)
                .await
                .unwrap_or_else(|_| {
                    Err(ApiError::OutcomeUnknown(format!(
                        "the create call took longer than {:?}",
                        self.options.create_span
                    )))
                });
            match created {
                Ok(execution) => {
                    self.journal.record_submitted(attempt, &execution, false)?;
                    return Ok(None);
                }
                Err(ApiError::Auth(why)) => return Err(RunError::Auth(ApiError::Auth(why))),
                Err(e @ (ApiError::Refused { status: 429, .. } | ApiError::Unreachable(_))) => {
                    // Provably never created: nothing to adopt.
                    return Ok(Some(Outcome::Abandoned(e.to_string())));
                }
                Err(e @ ApiError::Refused { status, .. }) if status < 500 => {
                    // AMC refused the request itself: the same body would be
                    // refused again, so no new attempt is made.
                    return Ok(Some(Outcome::Failed {
                        status: Status::Rejected,
                        message: e.to_string(),
                        retryable: false,
                    }));
                }
                Err(e) => {
                    tracing::warn!(attempt = %attempt.id, error = %e, "create outcome unknown; looking for the execution in AMC");
                }
            }
        }
        match self.find_created(attempt).await? {
            Ok(Verdict::Adopt(execution)) => {
                tracing::info!(attempt = %attempt.id, execution = %execution.workflow_execution_id, "adopted the execution AMC created for this intent");
                self.journal.record_submitted(attempt, &execution, true)?;
                Ok(None)
            }
            Ok(Verdict::NoneCreated) => Ok(Some(Outcome::Abandoned(
                "AMC lists no execution for this request".to_owned(),
            ))),
            Ok(Verdict::Ambiguous(ids)) => Ok(Some(Outcome::Unresolved(format!(
                "cannot tell which AMC execution attempt {} created: {} match its request ({}); \
                 none was adopted",
                attempt.id,
                ids.len(),
                ids.join(", ")
            )))),
            Err(e @ ApiError::Auth(_)) => Err(RunError::Auth(e)),
            Err(e) => Ok(Some(Outcome::Unresolved(format!(
                "cannot tell whether AMC created attempt {}: {e}",
                attempt.id
            )))),
        }
    }

    /// Lists the instance's executions of this workflow from the moment the
    /// intent's POST could first have arrived, and decides which is its own
    /// (`adoption`: same request, created while the POST could arrive, not
    /// owned by any attempt). The outer error is the journal's, the inner
    /// one AMC's.
    async fn find_created(
        &self,
        attempt: &OpenAttempt,
    ) -> Result<Result<Verdict, ApiError>, JournalError> {
        let sent = SentWindow::after_intent(attempt.created_at, self.options.create_span);
        let query = ListQuery {
            workflow_id: attempt.request.workflow_id.clone(),
            min_creation_time: sent.earliest,
            next_token: None,
        };
        let listed = match listing::list_all(&self.api, &self.instance_id, &query).await {
            Ok(listed) => listed,
            Err(e) => return Ok(Err(e)),
        };
        let journal = &self.journal;
        adoption::decide(listed, &attempt.request, sent, |id| {
            journal.attempt_owning(id).map(|owner| owner.is_some())
        })
        .map(Ok)
    }

    /// Downloads and checks the result of a SUCCEEDED execution.
    async fn collect(
        &self,
        attempt: &OpenAttempt,
        execution_id: &str,
    ) -> Result<Outcome, RunError> {
        let options = FetchOptions {
            max_bytes: self.options.max_result_bytes,
            keep_as: match &self.options.results_dir {
                None => None,
                Some(dir) => match kept_file_name(execution_id) {
                    Some(name) => Some(dir.join(name)),
                    None => {
                        return Ok(Outcome::Unresolved(format!(
                            "AMC execution id {execution_id:?} cannot name a file in amc.results_dir"
                        )));
                    }
                },
            },
            rows_limit: self.options.result_rows_limit,
        };
        let (mut failures, mut waits) = (0, 0);
        loop {
            let fetched = match self
                .api
                .download_urls(&self.instance_id, execution_id)
                .await
            {
                Ok(urls) => amc::result::fetch(&self.http, &urls, &options).await,
                Err(e) => Err(FetchError::Api(e)),
            };
            let (error, pending) = match fetched {
                Ok(summary) => {
                    self.journal.record_succeeded(attempt, &summary)?;
                    return Ok(Outcome::Succeeded);
                }
                Err(e @ FetchError::TooLarge { .. }) => {
                    return Ok(Outcome::Failed {
                        status: Status::Succeeded,
                        message: format!("AMC execution {execution_id}: {e}"),
                        retryable: false,
                    });
                }
                Err(e @ FetchError::Keep { .. }) => {
                    return Ok(Outcome::Unresolved(e.to_string()));
                }
                Err(FetchError::Api(e @ ApiError::Auth(_))) => return Err(RunError::Auth(e)),
                Err(FetchError::Api(e)) => {
                    let pending = e.is_result_pending();
                    (e.to_string(), pending)
                }
                // Not an empty result: the files are not written yet.
                Err(e @ FetchError::NoFiles) => (e.to_string(), true),
            };
            let spent = if pending {
                waits += 1;
                waits >= RESULT_WAITS
            } else {
                failures += 1;
                failures >= DOWNLOAD_TRIES
            };
            if spent {
                return Ok(Outcome::Unresolved(format!(
                    "the result of AMC execution {execution_id} could not be downloaded: {error}"
                )));
            }
            tracing::warn!(execution = %execution_id, error = %error, "result not downloadable yet");
            tokio::time::sleep(self.poll_interval).await;
        }
    }
}

/// `<id>.csv` when the id is safe as a file name (AMC's are UUIDs).
fn kept_file_name(execution_id: &str) -> Option<String> {
    let safe = !execution_id.is_empty()
        && execution_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    safe.then(|| format!("{execution_id}.csv"))
}
