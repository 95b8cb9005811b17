//! Journal to Postgres: the reconciler that drains the outbox batch by
//! batch, and the drift comparison behind `verify` and `audit`.
//!
//! Owns the order and bookkeeping of a sync. The SQL is the warehouse's;
//! the rows and their states are the journal's.

pub mod drift;
pub mod reconciler;

use reconciler::SyncReport;

/// How a sync went, as commands report it.
#[derive(Debug)]
pub enum Outcome {
    Synced(SyncReport),
    /// `postgres.url` is empty: journal only.
    NotConfigured,
    /// Postgres was away or refused the session; the journal keeps every
    /// change.
    Failed(String),
}
