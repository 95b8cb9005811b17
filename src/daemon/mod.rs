//! `chronicle run`: fires each schedule's cron in its timezone, catches up
//! firings missed while it was down, skips overlapping and paused firings,
//! journals every one of those decisions, reloads schedules on SIGHUP, serves
//! /healthz and /metrics, drains the outbox every reconciler interval, and
//! stops gracefully on SIGTERM/SIGINT.
//!
//! It also carries out the requests other processes leave while it holds
//! the runner lock (`requests`), delivers alerts (`alerts`) and speaks
//! systemd's notify protocol (`notify`).
//!
//! Owns the loop, signals and shutdown. What to decide is `firing`'s; what a
//! run does is the runner's; what reaches Postgres is the reconciler's.

mod alerts;
mod http;
pub mod metrics;
mod notify;
mod requests;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use serde::Serialize;

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinSet};
use tracing::Instrument;

use crate::amc::Api;
use crate::collect::attach;
use crate::collect::runner::{RunError, RunReport, Runner};
use crate::journal::events::{DaemonStopped, RunOutcome, ScheduleFiring, SchedulesReloaded};
use crate::journal::{AlertKind, DAEMON, Journal, NewAlert};
use crate::schedule::firing::{self, Clock, Decider, Reason, SystemClock, Timer};
use crate::schedule::{self, Schedule};
use crate::settings::Settings;
use crate::sync::reconciler;

/// What the outside world asks of the daemon (signals, or a test).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// SIGTERM or SIGINT: stop firing, finish up, exit.
    Stop,
    /// SIGHUP: read the schedules folder again.
    Reload,
}

/// Turns SIGTERM/SIGINT into `Stop` and SIGHUP into `Reload`. A second
/// stop signal exits the process at once (code 130), as users expect of a
/// second Ctrl-C.
pub fn os_signals() -> anyhow::Result<mpsc::Receiver<Control>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let (send, receive) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut stopping = false;
        loop {
            let control = tokio::select! {
                _ = term.recv() => Control::Stop,
                _ = int.recv() => Control::Stop,
                _ = hup.recv() => Control::Reload,
            };
            if control == Control::Stop {
                if stopping {
                    eprintln!("second stop signal: exiting now");
                    std::process::exit(130);
                }
                stopping = true;
            }
            if send.send(control).await.is_err() {
                return;
            }
        }
    });
    Ok(receive)
}

/// One schedule as `chronicle schedules` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// The schedule's name (its file's `name`).
    pub name: String,
    /// The six-field cron, as written.
    pub cron: String,
    /// The zone the cron is read in.
    pub timezone: String,
    /// Held by `chronicle pause`.
    pub paused: bool,
    /// The next three firings: local time in the schedule's zone, and UTC.
    pub next: Vec<(String, DateTime<Utc>)>,
    /// The scheduled instant of the last firing decision.
    pub last_decision_at: Option<DateTime<Utc>>,
    /// That decision's reason (`fired`, `skipped-paused`, ...).
    pub last_reason: Option<String>,
    /// How the last collection run ended.
    pub last_outcome: Option<String>,
    /// When it ended.
    pub last_outcome_at: Option<String>,
}

pub fn listing(
    schedules: &[Schedule],
    journal: &Journal,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Listing>> {
    schedules
        .iter()
        .map(|s| {
            let cron = firing::parse_cron(&s.cron).map_err(anyhow::Error::msg)?;
            let record = journal.schedule_record(&s.name)?;
            Ok(Listing {
                name: s.name.clone(),
                cron: s.cron.clone(),
                timezone: s.timezone.name().to_owned(),
                paused: record.paused,
                next: firing::upcoming(&cron, s.timezone, now, 3)
                    .into_iter()
                    .map(|t| {
                        let local = t.with_timezone(&s.timezone);
                        (local.format("%Y-%m-%d %H:%M:%S %Z").to_string(), t)
                    })
                    .collect(),
                last_decision_at: record.last_decision_at,
                last_reason: record.last_reason,
                last_outcome: record.last_outcome,
                last_outcome_at: record.last_outcome_at,
            })
        })
        .collect()
}

/// The schedules being fired and their timers, replaced as a whole on reload.
struct Loaded {
    schedules: Vec<Schedule>,
    /// `timers[i]` fires `schedules[i]`.
    timers: Vec<Timer>,
}

impl Loaded {
    fn new(schedules: Vec<Schedule>, now: DateTime<Utc>) -> anyhow::Result<Loaded> {
        let timers = schedules
            .iter()
            .map(|s| {
                let cron = firing::parse_cron(&s.cron).map_err(|why| {
                    anyhow::anyhow!("schedule file {}: key `cron`: {why}", s.file.display())
                })?;
                Ok(Timer::new(cron, s.timezone, now))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Loaded { schedules, timers })
    }

    fn names(&self) -> Vec<String> {
        self.schedules.iter().map(|s| s.name.clone()).collect()
    }
}

/// A collection run's end, as the run task hands it back, with why it did
/// not run to its end.
type Finished = (String, Result<RunReport, String>);

struct Daemon<A> {
    journal: Journal,
    runner: Arc<Runner<A>>,
    decider: Decider,
    runs: JoinSet<Finished>,
    /// Which schedule each run task serves: a task that panicked or was
    /// cut returns no name of its own, yet its collection must be freed.
    running: HashMap<tokio::task::Id, String>,
    settings: Settings,
    /// Requests of other processes being carried out.
    requests: requests::Requests,
    /// When this daemon started: refused credentials alert once per start.
    started: DateTime<Utc>,
}

impl<A: Api + Clone + 'static> Daemon<A> {
    /// Journals the decision for one wanted firing and starts the run when
    /// the decision is to run.
    fn decide(
        &mut self,
        schedule: &Schedule,
        wanted: Reason,
        at: DateTime<Utc>,
        detail: impl FnOnce(ScheduleFiring) -> ScheduleFiring,
    ) -> anyhow::Result<()> {
        let paused = self.journal.schedule_record(&schedule.name)?.paused;
        let reason = self.decider.decide(&schedule.name, wanted, paused);
        self.journal
            .record_firing(detail(ScheduleFiring::new(&schedule.name, reason, at)))?;
        if !reason.runs() {
            tracing::info!(schedule = %schedule.name, reason = reason.as_str(), scheduled_for = %at, "firing skipped");
            return Ok(());
        }
        let runner = self.runner.clone();
        let (settings, journal) = (self.settings.clone(), self.journal.clone());
        let name = schedule.name.clone();
        let schedule = schedule.clone();
        let started = self.started;
        let span = tracing::info_span!(
            "collection_run",
            schedule = %schedule.name,
            reason = reason.as_str(),
            scheduled_for = %at
        );
        let task = self.runs.spawn(
            async move {
                tracing::info!("collection run started");
                let result = async {
                    // A schedule new to the journal first attaches to the
                    // application's collection, if it has one; until
                    // Postgres can be asked, its runs end here.
                    if journal.collection_of(&schedule.name)?.is_none() {
                        attach::preflight(&settings, &journal, &[&schedule]).await?;
                    }
                    let today = Utc::now().with_timezone(&schedule.timezone).date_naive();
                    let (_, report) = runner
                        .collect(
                            &schedule,
                            today,
                            reason.triggered_by(),
                            &ProgressBar::hidden(),
                        )
                        .await?;
                    Ok::<_, anyhow::Error>(report)
                }
                .await
                .map_err(|e| {
                    if let Some(RunError::Auth(why)) = e.downcast_ref::<RunError>() {
                        credentials_refused(&journal, started, &why.to_string());
                    }
                    format!("{e:#}")
                });
                (schedule.name.clone(), result)
            }
            .instrument(span),
        );
        self.running.insert(task.id(), name);
        Ok(())
    }

    /// Books the end of a run task, however it ended.
    fn joined(
        &mut self,
        done: Result<(tokio::task::Id, Finished), JoinError>,
    ) -> anyhow::Result<()> {
        match done {
            Ok((id, finished)) => {
                self.running.remove(&id);
                self.finished(finished)
            }
            Err(e) => {
                let Some(name) = self.running.remove(&e.id()) else {
                    return Ok(());
                };
                self.decider.finished(&name);
                let why = if e.is_cancelled() {
                    "the daemon stopped; live executions resume at the next start".to_owned()
                } else {
                    format!("the run panicked: {e}")
                };
                let outcome = if e.is_cancelled() {
                    RunOutcome::Stopped
                } else {
                    RunOutcome::Failed
                };
                tracing::error!(schedule = %name, error = %why, "collection run ended early");
                self.journal
                    .record_run_finished(&name, outcome, 0, 0, Some(&why))?;
                Ok(())
            }
        }
    }

    fn finished(&mut self, (name, result): Finished) -> anyhow::Result<()> {
        self.decider.finished(&name);
        match result {
            Ok(report) => {
                tracing::info!(schedule = %name, completed = report.completed.len(), failed = report.failed.len(), "collection run finished");
                report.record(&self.journal, &name)?;
            }
            Err(e) => {
                tracing::error!(schedule = %name, error = %e, "collection run stopped");
                self.journal.record_run_finished(
                    &name,
                    RunOutcome::Failed,
                    0,
                    0,
                    Some(&e.to_string()),
                )?;
            }
        }
        Ok(())
    }

    /// Journals each schedule the daemon takes on for the first time.
    fn arm(&self, loaded: &Loaded) -> anyhow::Result<()> {
        for s in &loaded.schedules {
            self.journal
                .record_armed(&s.name, &s.cron, s.timezone.name())?;
        }
        Ok(())
    }

    /// At start: one catch-up run for firings missed while down (within the
    /// window), or a resume run for attempts an earlier process left open.
    fn start_up(&mut self, loaded: &Loaded, now: DateTime<Utc>) -> anyhow::Result<()> {
        for (schedule, timer) in loaded.schedules.iter().zip(&loaded.timers) {
            let record = self.journal.schedule_record(&schedule.name)?;
            let window = schedule
                .catchup_window
                .unwrap_or(self.settings.scheduler.catchup_window);
            let since = record.last_decision_at.or(record.armed_at);
            let missed = firing::missed(&timer.cron, timer.tz, since, now, window);
            let collection = crate::journal::identity::collection_id(&schedule.name);
            let open = self
                .journal
                .work(collection)?
                .iter()
                .any(|w| w.open_attempt.is_some());
            match missed {
                Some(missed) => self.decide(schedule, Reason::Catchup, missed.last, |firing| {
                    ScheduleFiring {
                        missed_firings: Some(missed.count as u64),
                        first_missed: Some(missed.first),
                        catchup_window_seconds: Some(window.as_secs()),
                        ..firing
                    }
                })?,
                None if open => self.decide(schedule, Reason::Resume, now, |firing| firing)?,
                None => {}
            }
        }
        Ok(())
    }
}

/// Raises the `credentials_refused` alert, once per daemon start: every
/// run fails the same way until the credentials are fixed.
fn credentials_refused(journal: &Journal, started: DateTime<Utc>, why: &str) {
    let alert = NewAlert {
        kind: AlertKind::CredentialsRefused,
        cause: format!("{}:{}", std::process::id(), started.to_rfc3339()),
        subject: "amc".to_owned(),
        summary: format!(
            "Login with Amazon refused chronicle's credentials; no week can run until they are fixed: {why}"
        ),
        details: serde_json::json!({ "error": why }),
    };
    if let Err(e) = journal.raise_alert(&alert) {
        tracing::error!(error = %e, "cannot journal the alert about refused credentials");
    }
}

pub async fn run<A: Api + Clone + 'static>(
    settings: Settings,
    schedules: Vec<Schedule>,
    journal: Journal,
    api: A,
    mut control: mpsc::Receiver<Control>,
) -> anyhow::Result<()> {
    let _lock = journal.lock_runner(DAEMON)?;
    let started = Utc::now();
    requests::Requests::settle_interrupted(&journal)?;
    let recovering = journal.record_runner_start("run")?;
    if recovering > 0 {
        tracing::info!(
            attempts = recovering,
            "resuming attempts an earlier process left open"
        );
    }
    // Before the first firing: a database chronicle cannot write to stops
    // the daemon (exit 2); Postgres away only delays new schedules.
    let all: Vec<&Schedule> = schedules.iter().collect();
    match attach::preflight(&settings, &journal, &all).await {
        Ok(_) => {}
        Err(e) if e.is_bad_input() => return Err(e.into()),
        Err(e) => tracing::warn!(error = %e, "collecting offline until Postgres is back"),
    }
    let clock = SystemClock;
    let mut loaded = Loaded::new(schedules, clock.now())?;
    let (stop_background, background_stopped) = watch::channel(false);
    let stopped = move || {
        let mut stopped = background_stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    // The HTTP server stops at the stop signal itself and drains in
    // parallel with the runs' grace, bounded by the same timeout, so a
    // stalled client never lengthens the stop.
    let (stop_serving, mut serving_stopped) = watch::channel(false);
    let http = match settings.http.listen {
        Some(listen) => {
            let limits = crate::daemon::http::Limits {
                header_read: settings.http.header_read_timeout,
                drain: settings.scheduler.shutdown_timeout,
            };
            Some(
                crate::daemon::http::serve(
                    listen,
                    journal.clone(),
                    settings.postgres_url().is_some(),
                    limits,
                    async move {
                        let _ = serving_stopped.wait_for(|stop| *stop).await;
                    },
                )
                .await?,
            )
        }
        None => None,
    };
    let reconciler = settings.postgres_target().map(|target| {
        tokio::spawn(reconciler::run(
            journal.clone(),
            target,
            settings.reconciler.interval,
            settings.reconciler.batch_size,
            stopped(),
        ))
    });
    let deliverer = alerts::Deliverer {
        settings: settings.alerts.clone(),
        started,
        postgres: settings.postgres_url().is_some(),
        journal_id: journal.journal_id()?,
    };
    let delivery = tokio::spawn(alerts::run(journal.clone(), deliverer, stopped()));
    let mut daemon = Daemon {
        runner: Arc::new(Runner::new(api, journal.clone(), &settings)),
        journal: journal.clone(),
        decider: Decider::default(),
        runs: JoinSet::new(),
        running: HashMap::new(),
        settings: settings.clone(),
        requests: requests::Requests::default(),
        started,
    };
    daemon.start_up(&loaded, clock.now())?;
    daemon.arm(&loaded)?;
    tracing::info!(schedules = loaded.schedules.len(), "daemon started");
    let notifier = notify::Notifier::from_env();
    notifier.ready();
    // Pinged from this loop itself: a wedged loop stops the pings and
    // systemd restarts the daemon.
    let mut watchdog = notifier.watchdog_every().map(tokio::time::interval);
    let mut poll_requests = tokio::time::interval(requests::POLL);

    let mut watched = folder_fingerprint(&settings.schedules.dir);
    let mut watch = settings.scheduler.watch_interval.map(tokio::time::interval);
    loop {
        tokio::select! {
            _ = async { watch.as_mut().expect("guarded").tick().await }, if watch.is_some() => {
                let now_seen = folder_fingerprint(&settings.schedules.dir);
                if now_seen != watched {
                    watched = now_seen;
                    tracing::info!("the schedules folder changed; reloading");
                    reload(&settings, &journal, &mut loaded, clock.now())?;
                    daemon.arm(&loaded)?;
                }
            }
            command = control.recv() => match command {
                Some(Control::Reload) => {
                    reload(&settings, &journal, &mut loaded, clock.now())?;
                    daemon.arm(&loaded)?;
                }
                Some(Control::Stop) | None => break,
            },
            due = firing::next_due(&mut loaded.timers, &clock) => {
                for (index, at) in due {
                    let schedule = loaded.schedules[index].clone();
                    daemon.decide(&schedule, Reason::Fired, at, |firing| firing)?;
                }
            }
            Some(done) = daemon.runs.join_next_with_id() => daemon.joined(done)?,
            _ = poll_requests.tick() => daemon.requests.poll(
                &daemon.journal,
                &daemon.settings,
                &daemon.runner,
                &mut daemon.decider,
            )?,
            Some(done) = daemon.requests.tasks.join_next_with_id() => {
                daemon.requests.joined(&daemon.journal, &mut daemon.decider, done)?;
            }
            _ = async { watchdog.as_mut().expect("guarded").tick().await }, if watchdog.is_some() => {
                notifier.watchdog();
            }
        }
    }

    notifier.stopping();
    let _ = stop_serving.send(true);
    let grace = settings.scheduler.shutdown_timeout;
    tracing::info!(grace = ?grace, "stopping: no new firings; in-flight runs get the grace period, live AMC executions keep running and are resumed at the next start");
    let drained = tokio::time::timeout(grace, async {
        while let Some(done) = daemon.runs.join_next_with_id().await {
            daemon.joined(done)?;
        }
        while let Some(done) = daemon.requests.tasks.join_next_with_id().await {
            daemon
                .requests
                .joined(&daemon.journal, &mut daemon.decider, done)?;
        }
        anyhow::Ok(())
    })
    .await;
    let mut cut = Vec::new();
    match drained {
        Err(_) => {
            // Every journal write is one synchronous transaction, so cutting
            // a run at an await point never leaves a half-written record.
            daemon.runs.abort_all();
            while let Some(done) = daemon.runs.join_next_with_id().await {
                if let Err(e) = &done {
                    cut.extend(daemon.running.get(&e.id()).cloned());
                }
                daemon.joined(done)?;
            }
            // A cut request is finished as such: its command stops waiting.
            daemon.requests.tasks.abort_all();
            while let Some(done) = daemon.requests.tasks.join_next_with_id().await {
                daemon
                    .requests
                    .joined(&daemon.journal, &mut daemon.decider, done)?;
            }
        }
        Ok(result) => result?,
    }
    let _ = stop_background.send(true);
    // A send cut here was not journaled as delivered: the next start sends
    // it again, with the same id.
    delivery.abort();
    let _ = delivery.await;
    if let Some(reconciler) = reconciler {
        // The loop only sees the stop between drains; one under way (a
        // connect to an unreachable Postgres takes seconds) would stretch
        // the bounded shutdown. Cutting it loses nothing: every ack is its
        // own journal transaction, Postgres rolls back the open one, and
        // the final sync below drains the rest (I3).
        reconciler.abort();
        let _ = reconciler.await;
    }
    let final_sync = match settings.postgres_target() {
        None => "not configured".to_owned(),
        Some(target) => {
            let sync = reconciler::sync_once(&journal, &target, settings.reconciler.batch_size);
            match tokio::time::timeout(grace, sync).await {
                Ok(Ok(report)) => {
                    tracing::info!(rows = report.rows, "final sync done");
                    "done".to_owned()
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "final sync failed; the journal keeps the updates");
                    format!("failed: {e}")
                }
                Err(_) => {
                    tracing::warn!("final sync timed out; the journal keeps the updates");
                    "timed out".to_owned()
                }
            }
        }
    };
    if let Some(http) = http {
        let _ = http.await;
    }
    journal.record_daemon_stopped(DaemonStopped {
        runs_cut: cut,
        final_sync,
        pid: std::process::id(),
    })?;
    Ok(())
}

/// Names, sizes and modification times of the folder's schedule files:
/// what changes when a file is added, removed or edited.
fn folder_fingerprint(
    dir: &std::path::Path,
) -> Vec<(std::path::PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "toml"))
        .map(|entry| {
            let meta = entry.metadata().ok();
            (
                entry.path(),
                meta.as_ref().map_or(0, |m| m.len()),
                meta.and_then(|m| m.modified().ok()),
            )
        })
        .collect();
    files.sort();
    files
}

/// Reads the schedules folder again. A folder that does not load (a bad
/// file, a duplicate name) keeps the current set, and says why.
fn reload(
    settings: &Settings,
    journal: &Journal,
    loaded: &mut Loaded,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let fresh = schedule::load_dir(&settings.schedules.dir, now.date_naive())
        .map_err(anyhow::Error::from)
        .and_then(|schedules| Loaded::new(schedules, now));
    match fresh {
        Ok(fresh) => {
            tracing::info!(schedules = ?fresh.names(), "schedules reloaded");
            journal.record_reload(SchedulesReloaded {
                schedules: fresh.names(),
                error: None,
                kept_previous: None,
            })?;
            *loaded = fresh;
        }
        Err(e) => {
            tracing::error!(error = %e, "schedules not reloaded; the previous set keeps running");
            journal.record_reload(SchedulesReloaded {
                schedules: loaded.names(),
                error: Some(format!("{e:#}")),
                kept_previous: Some(true),
            })?;
        }
    }
    Ok(())
}
