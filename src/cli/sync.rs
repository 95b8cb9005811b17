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
use crate::sync::{Outcome, drift, reconciler};
use crate::warehouse::Warehouse;

pub async fn sync(ctx: &Context) -> anyhow::Result<ExitCode> {
    let url = ctx.postgres_url("sync")?;
    let settings = ctx.settings()?;
    let journal = ctx.journal()?;
    let result = reconciler::sync_once(
        journal,
        url,
        &settings.postgres_tls(),
        settings.reconciler.batch_size,
    )
    .await;
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
    match settings.postgres_url() {
        Some(url) => {
            Warehouse::connect(url, &settings.postgres_tls()).await?;
            text.push_str("Postgres tracking tables are up to date\n");
        }
        None => text.push_str("postgres.url is empty: no Postgres to migrate\n"),
    }
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn verify(ctx: &Context, repair: bool, json: bool) -> anyhow::Result<ExitCode> {
    let url = ctx.postgres_url("verify against")?;
    let settings = ctx.settings()?;
    let journal = ctx.journal()?;
    let mut warehouse = Warehouse::connect(url, &settings.postgres_tls()).await?;
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
