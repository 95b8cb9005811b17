//! The commands that change what runs while a daemon may be running:
//! `rerun`, `backfill` and `cancel`, and `requests` to list what was asked.
//! Without a daemon they run in this process, as they always did; with
//! one holding the runner lock they journal a request, the daemon carries
//! it out within a second or two, and the command waits (bounded by
//! `--wait` or `requests.wait`) and prints the outcome, or returns at once
//! with `--no-wait`, printing the request id.
//!
//! Owns that choice, the wait and the exit codes (0 completed, 1 failed,
//! 2 refused); what each operation does is `collect::operations`'.

use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;

use super::args::Wait;
use super::context::Context;
use super::output::{emit, print};
use super::render;
use crate::amc::client::{Client, http_client};
use crate::collect::backfill;
use crate::collect::operations::{self, Asker, Done};
use crate::collect::runner::Runner;
use crate::journal::events::{Operation, RequestOutcome};
use crate::journal::{Journal, whoami};
use crate::schedule;
use crate::sync::reconciler;
use crate::telemetry::progress;

/// How often a waiting command looks at its request.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// A refused request or operation: exit code 2, like other bad input.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// `rerun`, `backfill` (not `--dry-run`) and `cancel`.
pub async fn ask(ctx: &Context, operation: Operation, wait: Wait) -> anyhow::Result<ExitCode> {
    let settings = ctx.settings()?;
    // A name the daemon would refuse is refused here, before anything is
    // journaled.
    if let Some(name) = operation.schedule() {
        schedule::find(&settings.schedules.dir, name, Utc::now().date_naive())?;
    }
    let journal = ctx.journal()?;
    match journal.runner_holder()? {
        Some(holder) if holder.daemon => {
            let id = journal.make_request(&operation, whoami().as_deref())?;
            eprintln!(
                "request {id} (`chronicle {}`) journaled for the running daemon, {}",
                operation.command(),
                holder.note
            );
            if wait.no_wait {
                print(&format!("{id}\n"))?;
                return Ok(ExitCode::SUCCESS);
            }
            let limit = wait.wait.unwrap_or(settings.requests.wait);
            wait_for(journal, id, limit, holder.pid).await
        }
        // Another runner (a backfill) holds it: refused with its name, as
        // before; without one, this process runs it.
        _ => in_process(ctx, operation).await,
    }
}

/// Waits until the daemon finished request `id`, then prints its outcome.
/// Stops early when the daemon (`pid`) is gone: the request stands for
/// the next daemon, and waiting hours for it would say nothing.
async fn wait_for(
    journal: &Journal,
    id: i64,
    limit: Duration,
    pid: Option<u32>,
) -> anyhow::Result<ExitCode> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        // Signal 0 only asks whether the process exists.
        let gone = pid.is_some_and(|pid| unsafe { libc::kill(pid as i32, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH));
        if gone && !journal.request_finished(id)? {
            eprintln!(
                "the daemon (pid {}) stopped before finishing request {id}; the request stands and the next daemon start takes it up (or ends it as interrupted): `chronicle requests`",
                pid.unwrap_or_default()
            );
            return Ok(ExitCode::from(1));
        }
        if journal.request_finished(id)? {
            let request = journal
                .request(id)?
                .ok_or_else(|| anyhow::anyhow!("request {id} vanished from the journal"))?;
            let done = Done {
                outcome: request.outcome.unwrap_or(RequestOutcome::Failed),
                message: request.message.unwrap_or_default(),
            };
            return finish(done);
        }
        if tokio::time::Instant::now() >= deadline {
            let state = journal.request(id)?.map_or("unknown", |r| match r.state {
                crate::journal::RequestState::Made => "waiting for the daemon",
                crate::journal::RequestState::Started => "being carried out",
                crate::journal::RequestState::Finished => "finished",
            });
            eprintln!(
                "request {id} is still {state} after {}; it stands: `chronicle requests` shows its outcome when it has one",
                humantime::format_duration(limit)
            );
            return Ok(ExitCode::from(1));
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// Prints the outcome; a refusal is bad input (exit 2).
fn finish(done: Done) -> anyhow::Result<ExitCode> {
    match done.outcome {
        RequestOutcome::Completed => {
            print(&format!("{}\n", done.message))?;
            Ok(ExitCode::SUCCESS)
        }
        RequestOutcome::Failed => {
            print(&format!("{}\n", done.message))?;
            Ok(ExitCode::from(1))
        }
        RequestOutcome::Refused => Err(Refused(done.message).into()),
    }
}

/// No daemon: the command holds the runner lock and does it itself.
async fn in_process(ctx: &Context, operation: Operation) -> anyhow::Result<ExitCode> {
    let settings = ctx.settings()?;
    settings.require_amc_credentials()?;
    let journal = ctx.journal()?;
    let api = Client::new(&settings.amc, http_client());
    match operation {
        Operation::Backfill { schedule, range } => {
            let schedule =
                schedule::find(&settings.schedules.dir, &schedule, Utc::now().date_naive())?;
            let bar = progress::bar(&schedule.name, "weeks");
            let summary =
                backfill::run_range(settings, journal, api, &schedule, range, "backfill", &bar)
                    .await?;
            print(&render::backfill(&schedule.name, &summary))?;
            Ok(super::outcome(summary.report.failed.is_empty()))
        }
        Operation::Cancel { key, fail } => {
            let done = crate::collect::cancel::cancel(journal, &api, &key, fail).await?;
            print(&format!("{}\n", done.describe()))?;
            Ok(ExitCode::SUCCESS)
        }
        rerun @ Operation::Rerun { .. } => {
            let command = rerun.kind();
            let _lock = journal.lock_runner(command)?;
            journal.record_runner_start(command)?;
            let runner = Runner::new(api, journal.clone(), settings);
            let asker = Asker {
                by: whoami(),
                request: None,
            };
            let done = operations::carry_out(&rerun, settings, journal, &runner, &asker).await;
            if done.outcome != RequestOutcome::Refused
                && let Some(target) = settings.postgres_target()
            {
                let synced =
                    reconciler::sync_once(journal, &target, settings.reconciler.batch_size).await;
                let pending = journal.pending_count()?;
                let line = match synced {
                    Ok(report) => render::sync_line(&crate::sync::Outcome::Synced(report), pending),
                    Err(e) => {
                        render::sync_line(&crate::sync::Outcome::Failed(e.to_string()), pending)
                    }
                };
                eprint!("{line}");
            }
            finish(done)
        }
    }
}

/// `chronicle requests`.
pub fn list(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let requests = ctx.journal_read_only()?.requests(50)?;
    emit(json, &requests, |requests| render::requests(requests))?;
    Ok(ExitCode::SUCCESS)
}
