//! The command line as clap parses it: every command, its arguments and
//! their help texts, and the parsers of argument values.
//!
//! Owns the shape of the command line only; what each command does is its
//! family's module.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use clap::{Parser, Subcommand};

use crate::audit::export::{Format, What};

/// `--version`: the crate's version and the commit it was built from
/// (`build.rs`; `unknown` outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CHRONICLE_COMMIT"),
    ")"
);

/// chronicle: week-by-week Amazon Marketing Cloud collections, journaled
/// locally and synced to Supabase Postgres.
#[derive(Debug, Parser)]
#[command(name = "chronicle", version = VERSION, about)]
pub struct Cli {
    /// Configuration file (defaults: ./config.toml when present, else built-in
    /// defaults; CHRONICLE_SECTION__KEY variables override both).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log lines as text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t)]
    pub log_format: crate::telemetry::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the example schedule against the built-in simulator (and a
    /// throwaway PostgreSQL when installed), then print a summary.
    Demo {
        /// Folder for the demo's config, schedule and journal (cleared first).
        #[arg(long, default_value = "chronicle-demo")]
        dir: PathBuf,
    },
    /// Run every due week of one schedule now (or those of --from..--to),
    /// to completion, then exit; a running daemon does it on request.
    Backfill {
        /// The schedule's name (its `name` key, or its file name without .toml).
        schedule: String,
        /// Print the weeks and the request bodies it would send; send nothing.
        #[arg(long)]
        dry_run: bool,
        /// First day of the range (YYYY-MM-DD): the weeks that hold a day
        /// of --from..--to are collected, the collection's start moving
        /// back to --from's week when it began later.
        #[arg(long, value_parser = parse_date, requires = "to")]
        from: Option<NaiveDate>,
        /// Last day of the range (YYYY-MM-DD); its week must be due.
        #[arg(long, value_parser = parse_date, requires = "from")]
        to: Option<NaiveDate>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Run a completed or failed week again: a new attempt, the earlier one
    /// kept and marked superseded; a running daemon does it on request.
    Rerun {
        schedule: String,
        /// Any day of the week (YYYY-MM-DD).
        #[arg(value_parser = parse_date)]
        week: NaiveDate,
        /// Why, for the journal (with who asked).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Cancel a live execution in AMC and journal it; the week goes back to
    /// pending (a later run submits it again) unless --fail. A running
    /// daemon does it on request.
    Cancel {
        /// A week date (YYYY-MM-DD), an attempt id or an AMC execution id.
        key: String,
        /// Mark the week failed instead of pending.
        #[arg(long)]
        fail: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Requests left for the running daemon, newest first, with their outcome.
    Requests {
        #[arg(long)]
        json: bool,
    },
    /// Alerts raised, newest first, with their delivery to each receiver.
    Alerts {
        /// How many to list.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the journal (SQLite's online backup, safe
    /// while a daemon writes) that `audit` accepts.
    Backup {
        /// The copy to write (replaced when it exists; mode 0600).
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `chronicle man > chronicle.1`.
    Man,
    /// Drain the journal's pending updates into Postgres once.
    Sync,
    /// Apply the journal's and Postgres's migrations.
    Migrate,
    /// Per schedule: weeks by status, live executions, pending sync.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The daemon: fire each schedule's cron and keep Postgres in sync.
    Run,
    /// Validate every schedule file and list each with its next three
    /// firings (its timezone and UTC) and its last firing and outcome.
    Schedules {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stop firing a schedule (journaled) until `resume`.
    Pause { schedule: String },
    /// Fire a paused schedule again (journaled).
    Resume { schedule: String },
    /// Everything the journal knows about one week: by week date
    /// (YYYY-MM-DD), week id, attempt id or AMC execution id.
    Lineage {
        key: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Compare the journal with Postgres: missing rows, differing tracking
    /// columns, dangling foreign keys, execution_id population per collection.
    Verify {
        /// Write the journal's state again for every row that differs.
        #[arg(long)]
        repair: bool,
        #[arg(long)]
        json: bool,
    },
    /// Rows Postgres refused, with its error; `retry [ID]` re-queues them.
    Quarantine {
        #[command(subcommand)]
        action: Option<QuarantineAction>,
        #[arg(long)]
        json: bool,
    },
    /// The weeks of one schedule: status, attempts, AMC execution, rows,
    /// checksum, synced; `--grid` prints one character per week.
    Weeks {
        schedule: String,
        #[arg(long)]
        grid: bool,
        #[arg(long)]
        json: bool,
    },
    /// Execution attempts, newest first.
    Executions {
        #[arg(long)]
        schedule: Option<String>,
        /// The journal state (intent, submitted, succeeded, failed,
        /// abandoned) or AMC's status word.
        #[arg(long)]
        status: Option<String>,
        /// A date (YYYY-MM-DD) or RFC 3339 time.
        #[arg(long, value_parser = parse_since)]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The raw event log, oldest first (one JSON object a line with --json).
    Events {
        /// A date (YYYY-MM-DD) or RFC 3339 time.
        #[arg(long, value_parser = parse_since)]
        since: Option<String>,
        /// Only events of this kind, e.g. attempt.succeeded.
        #[arg(long)]
        kind: Option<String>,
        /// Keep printing new events until Ctrl-C.
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write weeks, executions or events as CSV/JSON/NDJSON, or an evidence
    /// file (`--evidence FILE`) that `audit --evidence` verifies anywhere.
    Export {
        #[arg(long, value_enum)]
        what: Option<What>,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write a self-contained evidence file (events, hash chain, head).
        #[arg(long, conflicts_with_all = ["what", "out"])]
        evidence: Option<PathBuf>,
        #[arg(long)]
        schedule: Option<String>,
        /// Evidence from the first event at or after this date or time.
        #[arg(long, value_parser = parse_since, requires = "evidence")]
        since: Option<String>,
    },
    /// Verify the hash chain, the state tables against the event log and,
    /// when configured, Postgres; or (`--evidence FILE`) an evidence file.
    Audit {
        #[arg(long)]
        evidence: Option<PathBuf>,
        /// With --evidence: a chain head hash recorded elsewhere (Postgres's
        /// chronicle.chain_heads) that one event of the file must carry.
        #[arg(long, requires = "evidence")]
        expect_head: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Serve the built-in AMC simulator, to point a config at.
    AmcSim {
        #[arg(long, default_value = "127.0.0.1:8765")]
        listen: SocketAddr,
        /// How long each execution runs, e.g. "1s", "15m".
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        execution_duration: Duration,
    },
}

/// How a command waits for a request the running daemon carries out.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Wait {
    /// With a daemon running: print the request id and return at once.
    #[arg(long, conflicts_with = "wait")]
    pub no_wait: bool,
    /// With a daemon running: wait this long for the outcome (default
    /// `requests.wait`), e.g. "30m".
    #[arg(long, value_parser = humantime::parse_duration)]
    pub wait: Option<Duration>,
}

#[derive(Debug, Subcommand)]
pub enum QuarantineAction {
    /// Put quarantined rows back in the outbox (all, or the one with this id).
    Retry { id: Option<i64> },
}

/// Parses a date argument (`2025-01-06`), naming the form expected.
pub fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is not a date of the form YYYY-MM-DD"))
}

/// Parses `--since`: a date (`2025-03-03`, midnight UTC) or an RFC 3339
/// instant, into the journal's stored text form so it compares as text.
pub fn parse_since(text: &str) -> Result<String, String> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let at = date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc();
        return Ok(at.to_rfc3339_opts(SecondsFormat::Millis, true));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| {
            t.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Millis, true)
        })
        .map_err(|_| format!("`{text}` is neither a date (YYYY-MM-DD) nor an RFC 3339 time"))
}
