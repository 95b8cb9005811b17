//! Collecting weeks through AMC: the runner that sees each week's attempt
//! through (intent, create, poll, result, outcome), the one-shot `backfill`
//! built on it, `cancel`, which ends one attempt on purpose, and
//! `operations`: re-runs, range backfills and cancels by name, carried out
//! by the command or by the running daemon for it.
//!
//! Owns the order of the steps and AMC's concurrency limit. Which weeks are
//! due is the journal's planning; Postgres is never touched here.

pub(crate) mod attach;
pub mod backfill;
pub(crate) mod cancel;
pub(crate) mod operations;
pub(crate) mod runner;
