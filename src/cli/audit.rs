//! The commands that prove the journal: `export` (CSV, JSON, NDJSON, or an
//! evidence file) and `audit` (of the journal and Postgres, or of an
//! evidence file anywhere).
//!
//! Owns their flow and exit codes; the checks are `audit`'s, the files
//! `audit::evidence`'s and `audit::export`'s.

use std::path::Path;
use std::process::ExitCode;

use super::context::Context;
use super::output::{emit, print};
use super::render;
use crate::audit::export::{self, Format, What};
use crate::audit::{self, Finding, evidence};
use crate::journal::{ChainHead, JournalError};
use crate::settings::ConfigError;
use crate::sync::drift;
use crate::telemetry::progress;
use crate::warehouse::Warehouse;

pub fn export(
    ctx: &Context,
    what: What,
    format: Format,
    schedule: Option<&str>,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    if what == What::Events && schedule.is_some() {
        return Err(ConfigError::Invalid(
            "`--schedule` narrows weeks and executions; events are exported whole (use `--evidence FILE --schedule S` for a schedule's evidence)".into(),
        )
        .into());
    }
    let journal = ctx.journal_read_only()?;
    match out {
        Some(path) => {
            let file = crate::files::create(path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
            let rows = export::export(
                journal,
                what,
                format,
                schedule,
                std::io::BufWriter::new(file),
            )?;
            eprintln!("wrote {rows} rows to {}", path.display());
        }
        None => match export::export(journal, what, format, schedule, std::io::stdout().lock()) {
            Err(export::ExportError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => {
                other?;
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export_evidence(
    ctx: &Context,
    out: &Path,
    schedule: Option<&str>,
    since: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let journal = ctx.journal_read_only()?;
    let bar = progress::bar("evidence", "events");
    let header = match evidence::export(journal, out, schedule, since, &bar) {
        Ok(header) => header,
        Err(evidence::EvidenceError::Nothing(why)) => {
            bar.finish_and_clear();
            eprintln!("nothing to export: {why}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    bar.finish_and_clear();
    print(&format!(
        "wrote {} events ({}..{}) to {}; chain head {}\nverify anywhere with: chronicle audit --evidence {}\n",
        header.events,
        header.first_seq,
        header.head.seq,
        out.display(),
        header.head.hash,
        out.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `audit --evidence FILE`: needs no config, journal or database.
pub fn audit_evidence(
    file: &Path,
    expected_head: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let verdict = evidence::verify(file, expected_head)?;
    emit(json, &verdict, render::evidence)?;
    Ok(ExitCode::from(if verdict.ok() { 0 } else { 1 }))
}

/// `audit`: SQLite's check of the file, the chain, the state tables against
/// the log, and Postgres when `postgres.url` is set.
pub async fn audit(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let journal = match ctx.journal_read_only() {
        Ok(journal) => journal,
        Err(e) => {
            // A file SQLite cannot read is the audit's finding, not a pass
            // and not a bare error: the report names it.
            return match e.downcast_ref::<JournalError>() {
                Some(error @ JournalError::Sqlite { .. }) => {
                    let report = audit::unreadable(&ctx.settings()?.journal.path, error);
                    emit(json, &report, render::audit)?;
                    Ok(ExitCode::from(1))
                }
                _ => Err(e),
            };
        }
    };
    let bar = progress::bar("audit", "events");
    let report = audit::journal(journal, &bar);
    bar.finish_and_clear();
    let mut report = report?;
    let settings = ctx.settings()?;
    match settings.postgres_target() {
        None => report
            .notes
            .push("postgres.url is empty: Postgres was not compared".into()),
        Some(_) if report.file_damaged() => report
            .notes
            .push("the journal file is damaged: Postgres was not compared with it".into()),
        Some(target) => match Warehouse::open(&target).await {
            Err(e) => report.push(Finding {
                check: "postgres",
                subject: "connection".into(),
                detail: format!("cannot compare with Postgres: {e}"),
            }),
            Ok(warehouse) => {
                let found = drift::check(journal, &warehouse).await?;
                for f in found.findings {
                    report.push(Finding {
                        check: "postgres",
                        subject: format!("{} {}", f.entity, f.id),
                        detail: format!("{}: {}", f.problem.as_str(), f.detail),
                    });
                }
                let (heads, others) = warehouse.chain_heads(&report.journal_id).await?;
                let heads: Vec<ChainHead> = heads
                    .into_iter()
                    .map(|(seq, hash)| ChainHead { seq, hash })
                    .collect();
                audit::chain_heads(journal, &heads, others, &mut report)?;
            }
        },
    }
    emit(json, &report, render::audit)?;
    Ok(ExitCode::from(if report.clean() { 0 } else { 1 }))
}

/// Bad `--what`/`--evidence` combinations are bad input (exit 2).
pub fn bad_export_arguments() -> ConfigError {
    ConfigError::Invalid(
        "`chronicle export` needs either `--what weeks|executions|events` or `--evidence FILE`"
            .into(),
    )
}
