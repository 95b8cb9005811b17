//! The commands between the journal and Postgres: `sync`, `migrate`,
//! `verify` (with `--repair`) and `quarantine`.
//!
//! Owns their wiring and exit codes; the work is `sync`'s and the
//! warehouse's.

use std::process::ExitCode;

use super::args::QuarantineAction;
use super::context::Context;
use super::output::{emit, print};
use super::{outcome, render};
use chrono::Utc;

use crate::schedule;
use crate::sync::{Outcome, drift, reconciler};
use crate::warehouse::Warehouse;

pub async fn sync(ctx: &Context) -> anyhow::Result<ExitCode> {
    let target = ctx.postgres_target("sync")?;
    let settings = ctx.settings()?;
    let journal = ctx.journal()?;
    let result = reconciler::sync_once(journal, &target, settings.reconciler.batch_size).await;
    let pending = journal.pending_count()?;
    let (sync, ok) = match result {
        Ok(report) => {
            let refused = report.quarantined > 0;
            (Outcome::Synced(report), !refused)
        }
        Err(e) => (Outcome::Failed(e.to_string()), false),
    };
    print(&render::sync_line(&sync, pending))?;
    Ok(outcome(ok))
}

pub async fn migrate(ctx: &Context) -> anyhow::Result<ExitCode> {
    let settings = ctx.settings()?;
    let journal = ctx.journal()?;
    let mut text = format!("journal {} is up to date\n", journal.path().display());
    match settings.postgres_target() {
        Some(target) => {
            let mut warehouse = Warehouse::open(&target).await?;
            text.push_str("Postgres tracking tables are up to date\n");
            // The schedules' rows must be writable there too (the
            // application's workflow and instance rows exist).
            let schedules = schedule::load_dir(&settings.schedules.dir, Utc::now().date_naive())?;
            let pairs: Vec<(&str, &str)> = schedules
                .iter()
                .map(|s| (s.workflow_id.as_str(), s.instance_id.as_str()))
                .collect();
            warehouse.preflight(&pairs).await?;
            text.push_str(&format!(
                "Postgres can take the rows of all {} schedules\n",
                schedules.len()
            ));
        }
        None => text.push_str("postgres.url is empty: no Postgres to migrate\n"),
    }
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn verify(ctx: &Context, repair: bool, json: bool) -> anyhow::Result<ExitCode> {
    let target = ctx.postgres_target("verify against")?;
    let settings = ctx.settings()?;
    let journal = ctx.journal()?;
    let mut warehouse = Warehouse::open(&target).await?;
    let mut found = drift::check(journal, &warehouse).await?;
    if repair && found.has_drift() {
        let rows = found.repairable();
        journal.requeue(&rows)?;
        reconciler::drain(journal, &mut warehouse, settings.reconciler.batch_size).await?;
        print(&format!("re-sent {} rows from the journal\n", rows.len()))?;
        found = drift::check(journal, &warehouse).await?;
    }
    emit(json, &found, render::drift)?;
    Ok(outcome(!found.has_drift()))
}

pub fn quarantine(
    ctx: &Context,
    action: Option<&QuarantineAction>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let journal = ctx.journal()?;
    match action {
        Some(QuarantineAction::Retry { id }) => {
            let requeued = journal.requeue_quarantined(*id)?;
            print(&format!(
                "{requeued} rows re-queued; the next sync sends them\n"
            ))?;
            Ok(outcome(requeued > 0 || id.is_none()))
        }
        None => {
            emit(json, &journal.quarantined()?, |rows| {
                render::quarantine(rows)
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
