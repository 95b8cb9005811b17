//! chronicle: an embedded scheduler for Amazon Marketing Cloud historical
//! collections, with a crash-safe SQLite journal synced to Supabase Postgres.
//!
//! See ARCHITECTURE.md for the code map and the invariants each module keeps.

pub mod amc;
pub mod audit;
pub mod backfill;
pub mod cancel;
pub mod cli;
pub mod daemon;
pub mod demo;
pub mod drift;
pub mod evidence;
pub mod export;
pub mod firing;
pub mod http;
pub mod identity;
pub mod inspection;
pub mod journal;
pub mod metrics;
pub mod postgres_tls;
pub mod reconciler;
pub mod replay;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod settings;
pub mod simulator;
pub mod telemetry;
pub mod throwaway_postgres;
pub mod tracking;
pub mod warehouse;
pub mod week;
