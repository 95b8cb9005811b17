//! `chronicle cancel`: ends one open attempt on purpose. Its execution is
//! cancelled in AMC (PUT status CANCELLED) and only then journaled, so the
//! journal never says cancelled about an execution AMC is still running.
//!
//! Owns finding the attempt from what the user typed and the order of the
//! two steps; the journal owns the transition, the client the HTTP call.

use chrono::NaiveDate;
use uuid::Uuid;

use crate::amc::{Api, ApiError};
use crate::collect::runner::Cancelling;
use crate::journal::{Journal, JournalError};

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error(
        "no open attempt matches `{0}` (a week date YYYY-MM-DD, an attempt id or an AMC execution id); `chronicle status` lists live executions"
    )]
    NotFound(String),
    #[error("`{key}` matches {} open attempts ({}); name one by its attempt id", .matches.len(), .matches.join(", "))]
    Ambiguous {
        /// What the user typed.
        key: String,
        /// Each match, described so the user can pick one.
        matches: Vec<String>,
    },
    #[error(
        "attempt {0} has no AMC execution id yet (its create call is unsettled); run `chronicle backfill` to settle it first"
    )]
    NotSubmitted(Uuid),
    #[error("AMC did not cancel execution {execution}: {source}")]
    Amc {
        /// The AMC execution id that was not cancelled.
        execution: String,
        source: ApiError,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl CancelError {
    /// The user named nothing cancellable: exit code 2, like other bad input.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            CancelError::NotFound(_) | CancelError::Ambiguous { .. } | CancelError::NotSubmitted(_)
        )
    }
}

/// What was cancelled, for the command's output.
#[derive(Debug, Clone)]
pub struct Cancelled {
    /// The schedule's name.
    pub collection: String,
    /// The week the attempt was for.
    pub week_start: NaiveDate,
    /// The journal's attempt, now ended CANCELLED.
    pub attempt_id: Uuid,
    /// What AMC cancelled.
    pub amc_execution_id: String,
    /// `pending` (a later run submits it again) or `failed`.
    pub week_status: &'static str,
}

/// Cancels the one open attempt `key` names. Holds the runner lock, so a
/// running backfill does not race it over the same attempt (a running
/// daemon carries a cancel out itself: `cancel_in`).
pub async fn cancel<A: Api>(
    journal: &Journal,
    api: &A,
    key: &str,
    fail_week: bool,
) -> Result<Cancelled, CancelError> {
    let _lock = journal.lock_runner("cancel")?;
    cancel_in(journal, api, key, fail_week, &Cancelling::default()).await
}

/// The cancel itself, by a process that holds the runner lock already.
/// `cancelling` tells this process's weeks to leave the attempt to it.
pub async fn cancel_in<A: Api>(
    journal: &Journal,
    api: &A,
    key: &str,
    fail_week: bool,
    cancelling: &Cancelling,
) -> Result<Cancelled, CancelError> {
    let mut targets = journal.cancel_targets(key)?;
    let target = match targets.len() {
        0 => return Err(CancelError::NotFound(key.to_owned())),
        1 => targets.remove(0),
        _ => {
            return Err(CancelError::Ambiguous {
                key: key.to_owned(),
                matches: targets
                    .iter()
                    .map(|t| format!("{} {} attempt {}", t.collection, t.week_start, t.attempt.id))
                    .collect(),
            });
        }
    };
    let attempt = &target.attempt;
    let execution = attempt
        .amc_execution_id
        .clone()
        .ok_or(CancelError::NotSubmitted(attempt.id))?;
    cancelling.begin(attempt.id);
    if let Err(source) = api.cancel(&target.instance_id, &execution).await {
        cancelling.abandon(attempt.id);
        return Err(CancelError::Amc {
            execution: execution.clone(),
            source,
        });
    }
    let message = format!("AMC execution {execution} cancelled by `chronicle cancel`");
    journal.record_cancelled(attempt, &message, fail_week)?;
    tracing::info!(attempt = %attempt.id, %execution, fail_week, "cancelled");
    Ok(Cancelled {
        collection: target.collection,
        week_start: target.week_start,
        attempt_id: attempt.id,
        amc_execution_id: execution,
        week_status: if fail_week { "failed" } else { "pending" },
    })
}

impl Cancelled {
    /// What `chronicle cancel` prints.
    pub fn describe(&self) -> String {
        format!(
            "cancelled AMC execution {} ({} week {}, attempt {}); the week is now {}",
            self.amc_execution_id,
            self.collection,
            self.week_start,
            self.attempt_id,
            self.week_status
        )
    }
}
