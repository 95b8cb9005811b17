//! What the journal shows: the read-only views commands print (`status`,
//! `lineage`, the listings, the event log, the state tables for the audit,
//! the file's consistency check, /metrics and /healthz).
//!
//! Owns queries only; nothing here changes the journal except the health
//! probe's row. Rendering is `cli::render`'s.

pub mod health;
pub mod integrity;
pub mod lineage;
pub mod listings;
pub mod log;
pub mod metrics;
mod owners;
mod spill;
pub mod state;
pub mod status;
