//! Collecting weeks through AMC: the runner that sees each week's attempt
//! through (intent, create, poll, result, outcome), the one-shot `backfill`
//! built on it, and `cancel`, which ends one attempt on purpose.
//!
//! Owns the order of the steps and AMC's concurrency limit. Which weeks are
//! due is the journal's planning; Postgres is never touched here.

pub mod attach;
pub mod backfill;
pub mod cancel;
pub mod runner;
