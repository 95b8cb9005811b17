//! Throwaway setups for the demo, the tests and the benchmarks: a private
//! PostgreSQL cluster started from the machine's server binaries.
//!
//! Owns nothing the product runs on in production.

mod cluster;

pub use cluster::{Cluster, ClusterError, binaries_available};
