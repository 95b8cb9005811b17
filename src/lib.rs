//! chronicle: an embedded scheduler for Amazon Marketing Cloud historical
//! collections, with a crash-safe SQLite journal synced to Supabase Postgres.
//!
//! See ARCHITECTURE.md for the code map and the invariants each module keeps.

pub mod amc;
pub mod identity;
pub mod journal;
pub mod reconciler;
pub mod runner;
pub mod schedule;
pub mod settings;
pub mod simulator;
pub mod throwaway_postgres;
pub mod tracking;
pub mod warehouse;
pub mod week;
