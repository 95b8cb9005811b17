//! The command line: clap definitions, one function per command, and the
//! exit codes (0 done, 1 something failed, 2 bad input).
//!
//! Owns wiring only: each command loads what it needs and calls the module
//! that does the work.

pub mod inspect;
pub mod render;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};

use crate::amc::client::{Client, http_client};
use crate::audit::export::{Format, What};
use crate::collect::backfill;
use crate::sync::drift;

use crate::journal::{EventFilter, ExecutionFilter, Journal, JournalError};
use crate::sync::reconciler;

use crate::amc::simulator::{self, SimConfig, Simulator};
use crate::schedule::{self, ScheduleError};
use crate::settings::{ConfigError, Settings};
use crate::warehouse::Warehouse;

/// chronicle: week-by-week Amazon Marketing Cloud collections, journaled
/// locally and synced to Supabase Postgres.
#[derive(Debug, Parser)]
#[command(version, about)]
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
    /// Run every due week of one schedule now, to completion, then exit.
    Backfill {
        /// The schedule's name (its `name` key, or its file name without .toml).
        schedule: String,
        /// Print the weeks and the request bodies it would send; send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Cancel a live execution in AMC and journal it; the week goes back to
    /// pending (a later run submits it again) unless --fail.
    Cancel {
        /// A week date (YYYY-MM-DD), an attempt id or an AMC execution id.
        key: String,
        /// Mark the week failed instead of pending.
        #[arg(long)]
        fail: bool,
    },
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
        #[arg(long, value_parser = inspect::parse_since)]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The raw event log, oldest first (one JSON object a line with --json).
    Events {
        /// A date (YYYY-MM-DD) or RFC 3339 time.
        #[arg(long, value_parser = inspect::parse_since)]
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
        #[arg(long, value_parser = inspect::parse_since, requires = "evidence")]
        since: Option<String>,
    },
    /// Verify the hash chain, the state tables against the event log and,
    /// when configured, Postgres; or (`--evidence FILE`) an evidence file.
    Audit {
        #[arg(long)]
        evidence: Option<PathBuf>,
        /// With --evidence: a chain head hash recorded elsewhere (Postgres's
        /// chronicle_chain_heads) that one event of the file must carry.
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

#[derive(Debug, Subcommand)]
pub enum QuarantineAction {
    /// Put quarantined rows back in the outbox (all, or the one with this id).
    Retry { id: Option<i64> },
}

/// Bad input is exit 2: nothing was attempted, the user must fix something.
pub fn exit_code(error: &anyhow::Error) -> ExitCode {
    let bad_input = error.chain().any(|cause| {
        cause.is::<ConfigError>()
            || cause.is::<ScheduleError>()
            || matches!(
                cause.downcast_ref::<JournalError>(),
                Some(JournalError::Foreign { .. })
            )
            || cause
                .downcast_ref::<crate::collect::cancel::CancelError>()
                .is_some_and(|e| e.is_bad_input())
    });
    ExitCode::from(if bad_input { 2 } else { 1 })
}

fn settings(cli: &Cli) -> Result<Settings, ConfigError> {
    match &cli.config {
        Some(path) => Settings::load(path, true),
        None => Settings::load(&PathBuf::from("config.toml"), false),
    }
}

fn outcome(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Demo { dir } => Ok(outcome(crate::demo::run(dir).await?)),
        Command::Backfill { schedule, dry_run } => {
            backfill_command(&settings(&cli)?, schedule, *dry_run).await
        }
        Command::Cancel { key, fail } => cancel_command(&settings(&cli)?, key, *fail).await,
        Command::Sync => sync_command(&settings(&cli)?).await,
        Command::Migrate => {
            let settings = settings(&cli)?;
            let journal = Journal::open(&settings.journal.path)?;
            println!("journal {} is up to date", journal.path().display());
            if let Some(url) = settings.postgres_url() {
                Warehouse::connect(url, &settings.postgres_tls()).await?;
                println!("Postgres tracking tables are up to date");
            } else {
                println!("postgres.url is empty: no Postgres to migrate");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let settings = settings(&cli)?;
            let status = Journal::open(&settings.journal.path)?.status()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render::status(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Lineage { key, json } => inspect::lineage(&settings(&cli)?, key, *json),
        Command::Run => {
            let settings = settings(&cli)?;
            let schedules = schedule::load_dir(&settings.schedules.dir, Utc::now().date_naive())?;
            settings.require_amc_credentials()?;
            let journal = Journal::open(&settings.journal.path)?;
            let api = Client::new(&settings.amc, http_client());
            let control = crate::daemon::os_signals()?;
            crate::daemon::run(settings, schedules, journal, api, control).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedules { json } => {
            let settings = settings(&cli)?;
            let schedules = schedule::load_dir(&settings.schedules.dir, Utc::now().date_naive())?;
            let journal = Journal::open(&settings.journal.path)?;
            let listing = crate::daemon::listing(&schedules, &journal, Utc::now())?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&listing)?);
            } else {
                print!("{}", render::schedules(&listing));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pause { schedule } | Command::Resume { schedule } => {
            let pause = matches!(cli.command, Command::Pause { .. });
            let settings = settings(&cli)?;
            let found = schedule::find(&settings.schedules.dir, schedule, Utc::now().date_naive())?;
            let changed = Journal::open(&settings.journal.path)?.set_paused(&found.name, pause)?;
            let state = if pause { "paused" } else { "resumed" };
            match changed {
                true => println!("schedule `{}` {state}", found.name),
                false => println!("schedule `{}` was already {state}", found.name),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { repair, json } => verify_command(&settings(&cli)?, *repair, *json).await,
        Command::Quarantine { action, json } => {
            let settings = settings(&cli)?;
            let journal = Journal::open(&settings.journal.path)?;
            match action {
                Some(QuarantineAction::Retry { id }) => {
                    let requeued = journal.requeue_quarantined(*id)?;
                    println!("{requeued} rows re-queued; the next sync sends them");
                    Ok(outcome(requeued > 0 || id.is_none()))
                }
                None if *json => {
                    println!("{}", serde_json::to_string_pretty(&journal.quarantined()?)?);
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    print!("{}", render::quarantine(&journal.quarantined()?));
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Weeks {
            schedule,
            grid,
            json,
        } => inspect::weeks(&settings(&cli)?, schedule, *grid, *json),
        Command::Executions {
            schedule,
            status,
            since,
            json,
        } => {
            let filter = ExecutionFilter {
                schedule: schedule.clone(),
                status: status.clone(),
                since: since.clone(),
            };
            inspect::executions(&settings(&cli)?, &filter, *json)
        }
        Command::Events {
            since,
            kind,
            follow,
            json,
        } => {
            let filter = EventFilter {
                after_seq: 0,
                since: since.clone(),
                kind: kind.clone(),
            };
            inspect::events(&settings(&cli)?, filter, *follow, *json, shutdown_signal()).await
        }
        Command::Export {
            what,
            format,
            out,
            evidence,
            schedule,
            since,
        } => match (what, evidence) {
            (_, Some(file)) => inspect::export_evidence(
                &settings(&cli)?,
                file,
                schedule.as_deref(),
                since.as_deref(),
            ),
            (Some(what), None) => inspect::export(
                &settings(&cli)?,
                *what,
                *format,
                schedule.as_deref(),
                out.as_deref(),
            ),
            (None, None) => Err(inspect::bad_export_arguments().into()),
        },
        Command::Audit {
            evidence: Some(file),
            expect_head,
            json,
        } => inspect::audit_evidence(file, expect_head.as_deref(), *json),
        Command::Audit {
            evidence: None,
            json,
            ..
        } => inspect::audit(&settings(&cli)?, *json).await,
        Command::AmcSim {
            listen,
            execution_duration,
        } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let config = SimConfig {
                execution_duration: *execution_duration,
                ..SimConfig::default()
            };
            println!("AMC simulator on http://{listen}");
            println!("  [amc] base_url = \"http://{listen}\"");
            println!("        token_url = \"http://{listen}/auth/o2/token\"");
            println!(
                "        client_id = \"{}\", client_secret = \"{}\", refresh_token = \"{}\"",
                config.client_id, config.client_secret, config.refresh_token
            );
            simulator::serve(listener, Simulator::new(config), shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn backfill_command(
    settings: &Settings,
    name: &str,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let today = Utc::now().date_naive();
    let schedule = schedule::find(&settings.schedules.dir, name, today)?;
    if dry_run {
        let today = Utc::now().with_timezone(&schedule.timezone).date_naive();
        print!("{}", backfill::dry_run(settings, &schedule, today)?);
        return Ok(ExitCode::SUCCESS);
    }
    settings.require_amc_credentials()?;
    let journal = Journal::open(&settings.journal.path)?;
    let api = Client::new(&settings.amc, http_client());
    let summary = backfill::run(settings, &journal, api, &schedule, "backfill").await?;
    print!("{}", render::backfill(&schedule.name, &summary));
    Ok(outcome(summary.report.failed.is_empty()))
}

async fn cancel_command(settings: &Settings, key: &str, fail: bool) -> anyhow::Result<ExitCode> {
    settings.require_amc_credentials()?;
    let journal = Journal::open(&settings.journal.path)?;
    let api = Client::new(&settings.amc, http_client());
    let done = crate::collect::cancel::cancel(&journal, &api, key, fail).await?;
    println!(
        "cancelled AMC execution {} ({} week {}, attempt {}); the week is now {}",
        done.amc_execution_id, done.collection, done.week_start, done.attempt_id, done.week_status
    );
    Ok(ExitCode::SUCCESS)
}

async fn verify_command(settings: &Settings, repair: bool, json: bool) -> anyhow::Result<ExitCode> {
    let url = settings.postgres_url().ok_or_else(|| {
        ConfigError::Invalid("key `postgres.url` is empty: nothing to verify against".into())
    })?;
    let journal = Journal::open(&settings.journal.path)?;
    let mut warehouse = Warehouse::connect(url, &settings.postgres_tls()).await?;
    let mut found = drift::check(&journal, &warehouse).await?;
    if repair && found.has_drift() {
        let rows = found.repairable();
        journal.requeue(&rows)?;
        reconciler::drain(&journal, &mut warehouse, settings.reconciler.batch_size).await?;
        println!("re-sent {} rows from the journal", rows.len());
        found = drift::check(&journal, &warehouse).await?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        print!("{}", render::drift(&found));
    }
    Ok(outcome(!found.has_drift()))
}

async fn sync_command(settings: &Settings) -> anyhow::Result<ExitCode> {
    let url = settings.postgres_url().ok_or_else(|| {
        ConfigError::Invalid(
            "key `postgres.url` is empty: set it (or CHRONICLE_POSTGRES__URL) to sync".into(),
        )
    })?;
    let journal = Journal::open(&settings.journal.path)?;
    let result = reconciler::sync_once(
        &journal,
        url,
        &settings.postgres_tls(),
        settings.reconciler.batch_size,
    )
    .await;
    let pending = journal.pending_count()?;
    match result {
        Ok(report) => {
            let refused = report.quarantined > 0;
            print!(
                "{}",
                render::sync_line(&backfill::SyncOutcome::Synced(report), pending)
            );
            Ok(outcome(!refused))
        }
        Err(e) => {
            print!(
                "{}",
                render::sync_line(&backfill::SyncOutcome::Failed(e.to_string()), pending)
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM: the daemon's and simulator's stop signal.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
