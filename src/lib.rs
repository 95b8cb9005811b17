//! chronicle: an embedded scheduler for Amazon Marketing Cloud historical
//! collections, with a crash-safe SQLite journal synced to Supabase Postgres.
//!
//! See ARCHITECTURE.md for the code map and the invariants each module keeps.

pub mod amc;
pub mod audit;
pub mod cli;
pub mod collect;
pub mod daemon;
pub mod files;

pub mod journal;
pub mod schedule;
pub mod settings;
pub mod sync;
pub mod telemetry;
pub mod throwaway;
pub mod warehouse;
