//! What commands print: the backfill summary, `status`, `lineage`, the
//! audit listings (`weeks`, `executions`, `events`, `audit`), as tables for
//! people or JSON for scripts.
//!
//! Owns formatting only; every figure comes from the journal's views.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

use crate::audit::AuditReport;
use crate::audit::evidence::Verdict;
use crate::collect::backfill::{Summary, SyncOutcome};
use crate::journal::{
    ExecutionLine, Lineage, Quarantined, StatusReport, StoredEvent, SyncedValues, WeekLine,
};
use crate::sync::drift::DriftReport;

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    table.set_header(header.iter().copied());
    table
}

pub fn backfill(name: &str, summary: &Summary) -> String {
    let mut out = String::new();
    let report = &summary.report;
    out.push_str(&format!(
        "{name}: {} weeks completed, {} failed ({} new weeks planned, collection starts {})\n",
        report.completed.len(),
        report.failed.len(),
        summary.plan.weeks_added,
        summary.plan.start_date
    ));
    for (week, reason) in &report.failed {
        out.push_str(&format!("  week {week} not completed: {reason}\n"));
    }
    out.push_str(&sync_line(&summary.sync, summary.pending_sync));
    out
}

pub fn sync_line(sync: &SyncOutcome, pending: i64) -> String {
    match sync {
        SyncOutcome::Synced(report) if report.quarantined > 0 => format!(
            "synced {} rows to Postgres in {} batches; Postgres refused {} rows, now in quarantine (see `chronicle quarantine`); {pending} updates pending sync\n",
            report.rows, report.batches, report.quarantined
        ),
        SyncOutcome::Synced(report) => format!(
            "synced {} rows to Postgres in {} batches; {pending} updates pending sync\n",
            report.rows, report.batches
        ),
        SyncOutcome::NotConfigured => {
            format!("sync skipped: postgres.url is empty; {pending} updates wait in the journal\n")
        }
        SyncOutcome::Failed(why) => format!(
            "sync failed ({why}); {pending} updates wait in the journal and will sync when Postgres is back\n"
        ),
    }
}

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
    if let Some(error) = &report.last_sync_error {
        out.push_str(&format!("last sync error: {error}\n"));
    }
    out
}

pub fn lineage(lineage: &Lineage) -> String {
    let mut out = String::new();
    for week in &lineage.weeks {
        out.push_str(&format!(
            "week {} of collection {} (week id {})\n  collection {} (id {}): workflow {} on instance {}, from {}\n  schedule file {} (sha256 now {})\n  status {}, rows {}, checksum {}, {}\n",
            week.week_start,
            week.collection,
            week.id,
            week.collection,
            week.collection_id,
            week.workflow_id,
            week.instance_id,
            week.collection_start,
            week.schedule_file,
            week.schedule_hash,
            week.status,
            week.record_count.map_or("-".into(), |n| n.to_string()),
            week.data_checksum.as_deref().unwrap_or("-"),
            if week.synced { "synced to Postgres" } else { "waiting to sync" },
        ));
        if let Some(error) = &week.error_message {
            out.push_str(&format!("  last error: {error}\n"));
        }
        let mut attempts = table(&[
            "attempt",
            "state",
            "AMC execution",
            "AMC status",
            "rows",
            "created",
            "completed",
        ]);
        for a in &week.attempts {
            attempts.add_row(vec![
                a.id.to_string(),
                a.state.clone(),
                a.amc_execution_id.clone().unwrap_or_else(|| "-".into()),
                a.amc_status.clone().unwrap_or_else(|| "-".into()),
                a.row_count.map_or("-".into(), |n| n.to_string()),
                a.created_at.clone(),
                a.completed_at.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&format!("{attempts}\n"));
        for a in &week.attempts {
            out.push_str(&format!(
                "  attempt {} ({}, triggered by {}, schedule sha256 then {}):\n    request: {}\n",
                a.id,
                a.state,
                a.triggered_by,
                a.schedule_hash_at_intent.as_deref().unwrap_or("-"),
                a.request
            ));
            match &a.postgres {
                Some(pg) => out.push_str(&format!("    Postgres holds {}\n", held(pg))),
                None => out.push_str("    Postgres holds nothing of it\n"),
            }
        }
        match &week.postgres {
            Some(pg) => out.push_str(&format!("  Postgres holds for the week {}\n", held(pg))),
            None => out.push_str("  Postgres holds nothing of the week yet\n"),
        }
        out.push_str("  events:\n");
        for (seq, at, kind, subject, _) in &week.events {
            out.push_str(&format!("    #{seq} {at} {kind} {subject}\n"));
        }
    }
    out
}

/// What Postgres holds of a row, in words.
fn held(pg: &SyncedValues) -> String {
    let values = pg.values.as_ref().map_or("-".into(), |v| v.to_string());
    match pg.waiting_since_seq {
        None => format!("(its current state): {values}"),
        Some(seq) => format!(
            "this state or a later one (the change at journal_seq {seq} waits to sync): {values}"
        ),
    }
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
pub fn schedules(listing: &[crate::daemon::Listing]) -> String {
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

/// `chronicle weeks <schedule>`: one line per week.
pub fn weeks(schedule: &str, weeks: &[WeekLine]) -> String {
    let mut table = table(&[
        "week",
        "status",
        "attempts",
        "AMC execution",
        "rows",
        "checksum",
        "synced",
    ]);
    for w in weeks {
        table.add_row(vec![
            w.week_start.clone(),
            w.status.clone(),
            w.attempts.to_string(),
            w.amc_execution_id.clone().unwrap_or_else(|| "-".into()),
            w.record_count.map_or("-".into(), |n| n.to_string()),
            w.data_checksum
                .as_deref()
                .map_or("-".into(), |c| c.chars().take(12).collect()),
            if w.synced { "yes" } else { "no" }.to_owned(),
        ]);
    }
    format!("{schedule}: {} weeks\n{table}\n", weeks.len())
}

/// `chronicle weeks <schedule> --grid`: one character per week, 52 to a
/// line. The letter is the status (upper case synced, lower case waiting
/// for Postgres), so it reads in a pipe; on a terminal it is also coloured.
pub fn week_grid(schedule: &str, weeks: &[WeekLine], colour: bool) -> String {
    let mut out = format!(
        "{schedule}: {} weeks, one character each (C completed, R running, P pending, F failed; lower case: not synced yet)\n",
        weeks.len()
    );
    for line in weeks.chunks(52) {
        out.push_str(&line[0].week_start);
        out.push(' ');
        for w in line {
            let (letter, ansi) = match w.status.as_str() {
                "completed" => ('C', "32"),
                "running" => ('R', "33"),
                "failed" => ('F', "31"),
                _ => ('P', "90"),
            };
            let letter = if w.synced {
                letter
            } else {
                letter.to_ascii_lowercase()
            };
            if colour {
                let underline = if w.synced { "" } else { ";4" };
                out.push_str(&format!("\x1b[{ansi}{underline}m{letter}\x1b[0m"));
            } else {
                out.push(letter);
            }
        }
        out.push('\n');
    }
    out
}

pub fn executions(lines: &[ExecutionLine]) -> String {
    if lines.is_empty() {
        return "no executions match\n".to_owned();
    }
    let mut table = table(&[
        "attempt",
        "schedule",
        "week",
        "state",
        "AMC execution",
        "AMC status",
        "rows",
        "created",
    ]);
    for e in lines {
        table.add_row(vec![
            e.attempt_id.clone(),
            e.schedule.clone(),
            e.week_start.clone(),
            e.state.clone(),
            e.amc_execution_id.clone().unwrap_or_else(|| "-".into()),
            e.amc_status.clone().unwrap_or_else(|| "-".into()),
            e.row_count.map_or("-".into(), |n| n.to_string()),
            e.created_at.clone(),
        ]);
    }
    format!("{table}\n")
}

/// One event per line: streamable, greppable.
pub fn event_line(event: &StoredEvent) -> String {
    format!(
        "#{} {} {} {} {}\n",
        event.seq, event.at, event.kind, event.subject, event.payload
    )
}

pub fn audit(report: &AuditReport) -> String {
    let mut out = format!(
        "journal {}: {} events, head {}\n",
        report.journal_id,
        report.events,
        report
            .head
            .as_ref()
            .map_or("none".into(), |h| format!("event {} {}", h.seq, h.hash))
    );
    if report.clean() {
        out.push_str("audit passed: the hash chain holds, the state tables match the event log");
        out.push_str(", and Postgres agrees where it was checked\n");
    } else {
        let mut table = table(&["check", "at", "finding"]);
        for f in &report.findings {
            table.add_row(vec![
                f.check.to_owned(),
                f.subject.clone(),
                f.detail.clone(),
            ]);
        }
        let total = report.findings.len() as u64 + report.unlisted_findings;
        if report.unlisted_findings == 0 {
            out.push_str(&format!("{total} findings:\n{table}\n"));
        } else {
            out.push_str(&format!(
                "{total} findings, the first {} listed:\n{table}\n",
                report.findings.len()
            ));
        }
    }
    for note in &report.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}

pub fn evidence(verdict: &Verdict) -> String {
    let mut out = String::new();
    if let Some(h) = &verdict.header {
        out.push_str(&format!(
            "evidence {}: journal {}, events {}..{} exported {}, head {}\n",
            verdict.file, h.journal_id, h.first_seq, h.head.seq, h.exported_at, h.head.hash
        ));
    }
    if verdict.ok() {
        out.push_str(&format!(
            "verified: {} events chain from {} to the head\n",
            verdict.events_checked,
            verdict
                .header
                .as_ref()
                .map_or(String::new(), |h| h.prev_hash.clone())
        ));
    } else {
        for problem in &verdict.problems {
            out.push_str(&format!("FAILED: {problem}\n"));
        }
    }
    out
}
