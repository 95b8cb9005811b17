//! Logging: tracing to stderr, filtered by RUST_LOG (default: chronicle's
//! own info messages and everyone's warnings).
//!
//! Owns subscriber setup only; modules log through `tracing` directly.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,chronicle=info"));
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
