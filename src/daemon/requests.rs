//! The daemon's side of requests (`rerun`, `backfill`, `cancel` made by
//! another process while `run` holds the runner lock): polled every
//! second, carried out with the daemon's own runner (its concurrency
//! limits hold), never two runs on one collection (a request waits while
//! its collection is busy, and holds it while it runs), and finished in the
//! journal with the words the waiting command prints.
//!
//! Owns the polling and the bookkeeping of request tasks. What an
//! operation does is `collect::operations`'.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{Id, JoinError, JoinSet};
use tracing::Instrument;

use crate::amc::Api;
use crate::collect::operations::{self, Asker, Done};
use crate::collect::runner::Runner;
use crate::journal::Journal;
use crate::journal::events::RequestOutcome;
use crate::schedule::firing::{Decider, Reason};
use crate::settings::Settings;

/// How often the daemon looks for new requests: a command's request is
/// taken up within about this long.
pub const POLL: Duration = Duration::from_secs(1);

/// Request tasks in flight.
#[derive(Default)]
pub struct Requests {
    pub tasks: JoinSet<(i64, Done)>,
    /// Each task's request and the collection it holds, if any: a task
    /// that was cut returns neither, yet both must be settled.
    held: HashMap<Id, (i64, Option<String>)>,
}

impl Requests {
    /// Ends the requests an earlier daemon took up and never finished
    /// (it was killed): what they had journaled stands, open attempts are
    /// resumed by this daemon's runs.
    pub fn settle_interrupted(journal: &Journal) -> anyhow::Result<()> {
        for request in journal.interrupted_requests()? {
            journal.finish_request(
                request.id,
                RequestOutcome::Failed,
                &format!(
                    "`{}` was interrupted: the daemon carrying it out stopped; what it journaled stands (open attempts are resumed), ask again to finish it",
                    request.operation.command()
                ),
            )?;
        }
        Ok(())
    }

    /// Starts every waiting request whose collection is free.
    pub fn poll<A: Api + Clone + 'static>(
        &mut self,
        journal: &Journal,
        settings: &Settings,
        runner: &Arc<Runner<A>>,
        decider: &mut Decider,
    ) -> anyhow::Result<()> {
        for request in journal.waiting_requests()? {
            let schedule = request.operation.schedule().map(str::to_owned);
            // Never two runners on one collection: it waits for the run,
            // unless it would be refused anyway (a running week): then it
            // is answered now, not after the run.
            if schedule.as_deref().is_some_and(|s| decider.is_busy(s)) {
                if let Some(done) = operations::refusal(&request.operation, settings, journal)
                    && journal.start_request(request.id)?
                {
                    journal.finish_request(request.id, done.outcome, &done.message)?;
                }
                continue;
            }
            if !journal.start_request(request.id)? {
                continue;
            }
            if let Some(schedule) = &schedule {
                // A person asked: runs even when paused, marks it busy.
                decider.decide(schedule, Reason::Manual, false);
            }
            let (journal, settings, runner) = (journal.clone(), settings.clone(), runner.clone());
            let operation = request.operation.clone();
            let asker = Asker {
                by: request.made_by.clone(),
                request: Some(request.id),
            };
            let id = request.id;
            let span = tracing::info_span!("request", request = id, command = %operation.command());
            tracing::info!(parent: &span, "request taken up");
            let task = self.tasks.spawn(
                async move {
                    let done =
                        operations::carry_out(&operation, &settings, &journal, &runner, &asker)
                            .await;
                    (id, done)
                }
                .instrument(span),
            );
            self.held.insert(task.id(), (id, schedule));
        }
        Ok(())
    }

    /// Books the end of a request task, however it ended.
    pub fn joined(
        &mut self,
        journal: &Journal,
        decider: &mut Decider,
        done: Result<(Id, (i64, Done)), JoinError>,
    ) -> anyhow::Result<()> {
        let (task, id, done) = match done {
            Ok((task, (id, done))) => (task, id, done),
            Err(e) => {
                let Some((id, _)) = self.held.get(&e.id()).cloned() else {
                    return Ok(());
                };
                let why = if e.is_cancelled() {
                    "the daemon stopped before it finished; what it journaled stands (open attempts are resumed at the next start)".to_owned()
                } else {
                    format!("it panicked: {e}")
                };
                (
                    e.id(),
                    id,
                    Done {
                        outcome: RequestOutcome::Failed,
                        message: why,
                    },
                )
            }
        };
        if let Some((_, Some(schedule))) = self.held.remove(&task) {
            decider.finished(&schedule);
        }
        tracing::info!(
            request = id,
            outcome = done.outcome.as_str(),
            "request finished"
        );
        journal.finish_request(id, done.outcome, &done.message)?;
        Ok(())
    }
}
