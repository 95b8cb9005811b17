//! Throwaway setups for the demo, the tests and the benchmarks: a private
//! PostgreSQL cluster started from the machine's server binaries, the
//! config file of a chronicle pointed at the simulator, and a database in
//! the application's shape with Supabase's roles.
//!
//! Owns nothing the product runs on in production.

pub mod application;
mod cluster;
mod config;

pub use cluster::{Cluster, ClusterError, binaries_available};
pub use config::ConfigFile;
