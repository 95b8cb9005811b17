//! `lineage`, `weeks` (and its grid), `executions` and `events` as text.
//!
//! Owns wording only; the rows are the journal's views.

use super::table;
use crate::journal::{ExecutionLine, Lineage, StoredEvent, SyncedValues, WeekLine};

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
            let state = match &a.superseded_at {
                Some(at) => format!("{}, superseded by a re-run at {at}", a.state),
                None => a.state.clone(),
            };
            out.push_str(&format!(
                "  attempt {} ({}, triggered by {}, schedule sha256 then {}):\n    request: {}\n",
                a.id,
                state,
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
        let status = match &w.unresolved {
            Some(_) => format!("{} *", w.status),
            None => w.status.clone(),
        };
        table.add_row(vec![
            w.week_start.clone(),
            status,
            w.attempts.to_string(),
            w.amc_execution_id.clone().unwrap_or_else(|| "-".into()),
            w.record_count.map_or("-".into(), |n| n.to_string()),
            w.data_checksum
                .as_deref()
                .map_or("-".into(), |c| c.chars().take(12).collect()),
            if w.synced { "yes" } else { "no" }.to_owned(),
        ]);
    }
    let mut out = format!("{schedule}: {} weeks\n{table}\n", weeks.len());
    for w in weeks {
        if let Some(reason) = &w.unresolved {
            out.push_str(&format!(
                "week {} (marked *): its attempt was left unresolved: {reason}\n",
                w.week_start
            ));
        }
    }
    out
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
