//! The audit's and the evidence check's verdicts as text.
//!
//! Owns wording only; the findings are the audit's.

use super::table;
use crate::audit::AuditReport;
use crate::audit::evidence::Verdict;

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
        out.push_str("audit passed: SQLite finds the file sound, the hash chain holds, the state tables match the event log");
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
