//! chronicle: an embedded scheduler for Amazon Marketing Cloud historical
//! collections, with a crash-safe SQLite journal synced to Supabase Postgres.
//!
//! The data flows through the modules in this order: `schedule` (the
//! schedule files, their weeks and firings) -> `collect` (the runner that
//! submits each due week through `amc`, the client or its simulator) ->
//! `journal` (every change first, in SQLite) -> `sync` (the reconciler)
//! -> `warehouse` (Supabase Postgres). `audit` and the inspection commands
//! look on; `daemon` is `chronicle run`; `cli` is the command line;
//! `settings`, `telemetry` and `files` serve them all; `throwaway` holds
//! the throwaway PostgreSQL and application database of the tests and
//! benchmarks.
//!
//! Public are the modules the binary, the tests and the benchmarks name;
//! `audit` and `files` are internal. ARCHITECTURE.md has the code map and
//! the invariants each module keeps.

pub mod amc;
mod audit;
pub mod cli;
pub mod collect;
pub mod daemon;
mod files;

pub mod journal;
pub mod schedule;
pub mod settings;
pub mod sync;
pub mod telemetry;
pub mod throwaway;
pub mod warehouse;
