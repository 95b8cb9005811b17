//! Integration tests: one binary, one throwaway PostgreSQL cluster, a fresh
//! database, folder and AMC simulator per test.

mod alerts;
mod amc;
mod amc_client;
mod application;
mod audit;
mod backfill;
mod backup;
mod bad_input;
mod boundaries;
mod conventions;
mod crash;
mod daemon;
mod helpers;
mod journal;
mod operations;
mod pipeline;
mod planning;
mod reconciler;
mod robustness;
mod strict_amc;
mod sync;
mod tls;
mod verify;
