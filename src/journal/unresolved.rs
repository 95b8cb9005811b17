//! Attempts a run had to leave open: an intent whose create outcome AMC
//! could not be asked about, a listing that matched several executions, a
//! result that could not be downloaded. Each time, one hash-chained
//! `attempt.unresolved` event with the reason, so `status`, `weeks` and
//! /metrics can show what waits and why (I2: never abandoned blind, never
//! submitted again, never wedged silently).
//!
//! Owns that one event. It changes no state table and marks nothing in the
//! outbox: the attempt stays as it was (`intent` or `submitted`) and the
//! next run takes it up again.

use super::events::{AttemptUnresolved, Event};
use super::{Journal, OpenAttempt, Result};

impl Journal {
    /// Journals that `attempt` was left open by this run, and why.
    pub fn record_unresolved(&self, attempt: &OpenAttempt, reason: &str) -> Result<i64> {
        let event = Event::AttemptUnresolved(AttemptUnresolved {
            week_id: attempt.week_id,
            reason: reason.to_owned(),
        });
        self.change(|c| c.record(&attempt.id.to_string(), &event))
    }
}
