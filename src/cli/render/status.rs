//! `status`, `schedules`, `quarantine` and `verify` as tables and lines.
//!
//! Owns wording only; the figures are the journal's views and the drift
//! comparison's.

use super::table;
use crate::daemon::Listing;
use crate::journal::{Quarantined, StatusReport};
use crate::sync::drift::DriftReport;

pub fn status(report: &StatusReport) -> String {
    let mut table = table(&[
        "schedule",
        "workflow",
        "instance",
        "start",
        "pending",
        "running",
        "completed",
        "failed",
        "live",
        "rows",
    ]);
    for c in &report.collections {
        let count = |status: &str| {
            c.weeks_by_status
                .get(status)
                .copied()
                .unwrap_or(0)
                .to_string()
        };
        table.add_row(vec![
            c.name.clone(),
            c.workflow_id.clone(),
            c.instance_id.clone(),
            c.start_date.to_string(),
            count("pending"),
            count("running"),
            count("completed"),
            count("failed"),
            c.live_executions.to_string(),
            c.rows_collected.to_string(),
        ]);
    }
    let mut out = format!(
        "journal: {} (journal_mode {}, synchronous {})\n",
        report.journal, report.journal_mode, report.synchronous
    );
    if let Some(start) = &report.last_start {
        out.push_str(&format!(
            "last runner start: {} by `{}`: {} open attempts recovered, {} executions adopted\n",
            start.at, start.command, start.recovered, start.adopted
        ));
    }
    if report.collections.is_empty() {
        out.push_str(
            "no collections yet: run `chronicle backfill <schedule>` or `chronicle run`\n",
        );
    } else {
        out.push_str(&format!("{table}\n"));
    }
    out.push_str(&format!(
        "AMC executions: {}\nupdates pending sync: {}{}\nlast successful sync: {}\n",
        report.executions,
        report.pending_sync,
        report
            .oldest_pending_since
            .as_deref()
            .map_or(String::new(), |since| format!(" (oldest since {since})")),
        report.last_sync_success.as_deref().unwrap_or("never")
    ));
    if report.quarantined > 0 {
        out.push_str(&format!(
            "rows Postgres refused: {} (see `chronicle quarantine`)\n",
            report.quarantined
        ));
    }
    if report.unresolved_attempts > 0 {
        out.push_str(&format!(
            "open attempts left unresolved: {} (the next run tries again; newest first):\n",
            report.unresolved_attempts
        ));
        for u in &report.unresolved {
            out.push_str(&format!(
                "  {} week {} attempt {} at {}: {}\n",
                u.schedule, u.week_start, u.attempt_id, u.at, u.reason
            ));
        }
    }
    if report.undelivered_alerts > 0 {
        out.push_str(&format!(
            "alerts not delivered yet: {} (see `chronicle alerts`)\n",
            report.undelivered_alerts
        ));
    }
    if let Some(error) = &report.last_sync_error {
        out.push_str(&format!("last sync error: {error}\n"));
    }
    for exposed in &report.permissions {
        out.push_str(&format!(
            "warning: {} is {} (mode {}): the journal's files hold the execution history; {}\n",
            exposed.path, exposed.problem, exposed.mode, exposed.fix
        ));
    }
    out
}

pub fn quarantine(rows: &[Quarantined]) -> String {
    if rows.is_empty() {
        return "no rows in quarantine\n".to_owned();
    }
    let mut table = table(&["id", "row", "quarantined", "error"]);
    for row in rows {
        table.add_row(vec![
            row.id.to_string(),
            format!("{} {}", row.entity, row.entity_id),
            row.quarantined_at.clone(),
            row.error.clone(),
        ]);
    }
    format!("{table}\nre-queue with `chronicle quarantine retry [ID]`, then `chronicle sync`\n")
}

pub fn drift(report: &DriftReport) -> String {
    let mut out = String::new();
    if report.findings.is_empty() {
        out.push_str("journal and Postgres agree\n");
    } else {
        let mut table = table(&["row", "problem", "detail"]);
        for f in &report.findings {
            table.add_row(vec![
                format!("{} {}", f.entity, f.id),
                f.problem.as_str().to_owned(),
                f.detail.clone(),
            ]);
        }
        out.push_str(&format!(
            "{} differences:\n{table}\n",
            report.findings.len()
        ));
    }
    let mut table = table(&[
        "collection",
        "weeks",
        "with execution_id",
        "rate",
        "completed without",
    ]);
    for p in &report.population {
        let rate = if p.weeks == 0 {
            100.0
        } else {
            100.0 * p.with_execution_id as f64 / p.weeks as f64
        };
        table.add_row(vec![
            p.collection.clone(),
            p.weeks.to_string(),
            p.with_execution_id.to_string(),
            format!("{rate:.1}%"),
            p.completed_without_execution_id.to_string(),
        ]);
    }
    out.push_str(&format!("execution_id population in Postgres:\n{table}\n"));
    if report.unsynced > 0 {
        out.push_str(&format!(
            "{} rows not compared: they wait in the outbox or quarantine\n",
            report.unsynced
        ));
    }
    if report.other_rows > 0 {
        out.push_str(&format!(
            "{} Postgres rows belong to no collection of this journal (left alone)\n",
            report.other_rows
        ));
    }
    out
}

/// `chronicle schedules`: one block per schedule, its next firings in its
/// zone and in UTC, and what the scheduler last did about it.
pub fn schedules(listing: &[Listing]) -> String {
    let mut out = String::new();
    for s in listing {
        let paused = if s.paused { "  [paused]" } else { "" };
        out.push_str(&format!(
            "{}  cron `{}` in {}{paused}\n",
            s.name, s.cron, s.timezone
        ));
        for (local, utc) in &s.next {
            out.push_str(&format!(
                "  next  {local}  =  {}\n",
                utc.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        match (&s.last_decision_at, &s.last_reason) {
            (Some(at), Some(reason)) => out.push_str(&format!(
                "  last firing  {}  {reason}\n",
                at.format("%Y-%m-%d %H:%M:%S UTC")
            )),
            _ => out.push_str("  last firing  never\n"),
        }
        if let (Some(outcome), Some(at)) = (&s.last_outcome, &s.last_outcome_at) {
            out.push_str(&format!("  last run     {outcome} at {at}\n"));
        }
    }
    if listing.is_empty() {
        out.push_str("no schedule files\n");
    }
    out
}
