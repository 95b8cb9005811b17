//! The command line: what each command runs, and the exit codes (0 done,
//! 1 something failed, 2 bad input).
//!
//! The room: `args` (clap's view of the command line), `context` (settings
//! and the journal, opened once per command), `output` (the one way
//! commands print, text or `--json`), `render` (what the text says), and
//! one module per family of commands: `collect`, `operations` (rerun,
//! backfill and cancel, in process or as requests to the daemon), `sync`,
//! `schedules`, `inspect`, `audit`, `ops` (alerts, backup, completions, the
//! man page) and `demo`. Each family wires; the work is the library's.

mod args;
mod audit;
mod collect;
mod context;
mod demo;
mod inspect;
mod operations;
mod ops;
mod output;
mod render;
mod schedules;
mod sync;

use std::process::ExitCode;

pub use args::{Cli, Command, QuarantineAction};
use context::Context;

use crate::journal::events::Operation;
use crate::journal::{EventFilter, ExecutionFilter, JournalError};
use crate::schedule::ScheduleError;
use crate::settings::ConfigError;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Context::new(cli.config);
    match cli.command {
        Command::Demo { dir } => Ok(outcome(demo::run(&dir).await?)),
        Command::Backfill {
            schedule,
            dry_run: true,
            from,
            to,
            ..
        } => collect::dry_run(&ctx, &schedule, from.zip(to)),
        Command::Backfill {
            schedule,
            from,
            to,
            wait,
            ..
        } => {
            let range = from.zip(to);
            operations::ask(&ctx, Operation::Backfill { schedule, range }, wait).await
        }
        Command::Rerun {
            schedule,
            week,
            reason,
            wait,
        } => {
            let rerun = Operation::Rerun {
                schedule,
                week,
                reason,
            };
            operations::ask(&ctx, rerun, wait).await
        }
        Command::Cancel { key, fail, wait } => {
            operations::ask(&ctx, Operation::Cancel { key, fail }, wait).await
        }
        Command::Requests { json } => operations::list(&ctx, json),
        Command::Alerts { limit, json } => ops::alerts(&ctx, limit, json),
        Command::Backup { file, json } => ops::backup(&ctx, &file, json),
        Command::Completions { shell } => ops::completions(shell),
        Command::Man => ops::man(),
        Command::Run => collect::daemon(&ctx).await,
        Command::AmcSim {
            listen,
            execution_duration,
        } => collect::simulator(listen, execution_duration).await,
        Command::Sync => sync::sync(&ctx).await,
        Command::Migrate => sync::migrate(&ctx).await,
        Command::Verify { repair, json } => sync::verify(&ctx, repair, json).await,
        Command::Quarantine { action, json } => sync::quarantine(&ctx, action.as_ref(), json),
        Command::Schedules { json } => schedules::list(&ctx, json),
        Command::Pause { schedule } => schedules::set_paused(&ctx, &schedule, true),
        Command::Resume { schedule } => schedules::set_paused(&ctx, &schedule, false),
        Command::Status { json } => inspect::status(&ctx, json),
        Command::Weeks {
            schedule,
            grid,
            json,
        } => inspect::weeks(&ctx, &schedule, grid, json),
        Command::Executions {
            schedule,
            status,
            since,
            json,
        } => {
            let filter = ExecutionFilter {
                schedule,
                status,
                since,
            };
            inspect::executions(&ctx, &filter, json)
        }
        Command::Events {
            since,
            kind,
            follow,
            json,
        } => {
            let filter = EventFilter {
                after_seq: 0,
                since,
                kind,
            };
            inspect::events(&ctx, filter, follow, json, shutdown_signal()).await
        }
        Command::Lineage { key, json } => inspect::lineage(&ctx, &key, json),
        Command::Export {
            what,
            format,
            out,
            evidence,
            schedule,
            since,
        } => match (what, evidence) {
            (_, Some(file)) => {
                audit::export_evidence(&ctx, &file, schedule.as_deref(), since.as_deref())
            }
            (Some(what), None) => {
                audit::export(&ctx, what, format, schedule.as_deref(), out.as_deref())
            }
            (None, None) => Err(audit::bad_export_arguments().into()),
        },
        Command::Audit {
            evidence: Some(file),
            expect_head,
            json,
        } => audit::audit_evidence(&file, expect_head.as_deref(), json),
        Command::Audit {
            evidence: None,
            json,
            ..
        } => audit::audit(&ctx, json).await,
    }
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
            || cause
                .downcast_ref::<crate::collect::attach::PreflightError>()
                .is_some_and(|e| e.is_bad_input())
            || cause
                .downcast_ref::<crate::collect::backfill::BackfillError>()
                .is_some_and(|e| e.is_bad_input())
            || cause.is::<operations::Refused>()
            || matches!(
                cause.downcast_ref::<crate::warehouse::WarehouseError>(),
                Some(crate::warehouse::WarehouseError::Schema(_))
            )
    });
    ExitCode::from(if bad_input { 2 } else { 1 })
}

fn outcome(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
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
