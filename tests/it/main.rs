//! Integration tests: one binary, one throwaway PostgreSQL cluster, a fresh
//! database, folder and AMC simulator per test.

mod backfill;
mod bad_input;
mod crash;
mod daemon;
mod helpers;
mod journal;
mod planning;
mod reconciler;
mod sync;
mod tls;
