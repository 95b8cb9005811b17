//! Logging: tracing to stderr, filtered by RUST_LOG (default: chronicle's
//! own info messages and everyone's warnings), human-readable or one JSON
//! object per line (`--log-format json`) with the fields of the spans an
//! event happened in (e.g. a collection run's schedule and reason).
//!
//! Owns subscriber setup only; modules log through `tracing` directly.

pub(crate) mod counters;
pub(crate) mod progress;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people and journald.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,chronicle=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}
