//! `chronicle audit`: proves the journal from its own record. First SQLite's
//! own consistency check of the file (a damaged page or index), then the
//! hash chain (the first broken event), the state tables against the state
//! the event log implies (replayed here), and, when Postgres is configured,
//! the drift comparison of `verify` plus the chain heads Postgres recorded
//! at each sync.
//!
//! The replay runs one collection at a time (the journal walks the log and
//! the tables grouped by collection), so its memory is one collection's
//! history, not the journal's.
//!
//! Owns the findings; the replay rules are `replay`'s. Reading is the journal's and the
//! warehouse's; the row comparison with Postgres is `drift`'s.

pub mod evidence;
pub mod export;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::journal::replay::{Applied, Replay};
use crate::journal::{AuditPart, ChainHead, Journal, JournalError, StateRow, StateTables};

/// One thing the audit could not reconcile.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `file`, `chain`, `state`, `postgres` or `chain head`.
    pub check: &'static str,
    /// The event, row or head at fault.
    pub subject: String,
    /// What is wrong, in words an auditor can act on.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct AuditReport {
    /// The journal audited (its chain-head key in Postgres).
    pub journal_id: String,
    /// The last event when the audit ran.
    pub head: Option<ChainHead>,
    /// Events walked by the replay.
    pub events: i64,
    /// What did not reconcile, the first `LISTED_FINDINGS` of it; empty
    /// (with `unlisted_findings` 0) means the audit passed.
    pub findings: Vec<Finding>,
    /// Findings past the listed ones, counted only: a journal broken
    /// everywhere must not make the audit's memory and output grow with it,
    /// and the listed ones already say where to start.
    pub unlisted_findings: u64,
    /// What could not be checked and why (old journals, unknown kinds, no
    /// Postgres): never findings, but an auditor must know.
    pub notes: Vec<String>,
}

/// How many findings a report lists.
pub const LISTED_FINDINGS: usize = 1000;

impl AuditReport {
    pub fn clean(&self) -> bool {
        self.findings.is_empty() && self.unlisted_findings == 0
    }

    /// SQLite found the file damaged: nothing read from it is trusted.
    pub fn file_damaged(&self) -> bool {
        self.findings.iter().any(|f| f.check == "file")
    }

    /// Lists `finding`, or counts it once the list is full.
    pub fn push(&mut self, finding: Finding) {
        if self.findings.len() < LISTED_FINDINGS {
            self.findings.push(finding);
        } else {
            self.unlisted_findings += 1;
        }
    }
}

/// The report of a journal SQLite cannot open: one `file` finding naming
/// it and the reason, so the audit fails instead of having nothing to say.
pub fn unreadable(path: &Path, error: &JournalError) -> AuditReport {
    let mut report = AuditReport::default();
    report.push(Finding {
        check: "file",
        subject: path.display().to_string(),
        detail: format!("SQLite cannot read the journal: {error}"),
    });
    report
}

/// Checks the file with SQLite's `quick_check`, then the chain, and replays
/// the log against the state tables; `progress` counts the events replayed.
/// Once the file is known damaged, a read that fails later ends the audit
/// with a `file` finding rather than an error: the report must still say
/// what was found.
pub fn journal(
    journal: &Journal,
    progress: &indicatif::ProgressBar,
) -> Result<AuditReport, JournalError> {
    let mut report = AuditReport::default();
    let file = journal.path().display().to_string();
    let damage = |detail: String| Finding {
        check: "file",
        subject: file.clone(),
        detail,
    };
    match journal.quick_check() {
        Ok(problems) => {
            for problem in problems {
                report.push(damage(format!("SQLite's quick_check: {problem}")));
            }
        }
        Err(e) => report.push(damage(format!("SQLite cannot check the file: {e}"))),
    }
    let damaged = !report.clean();
    match record(journal, progress, &mut report) {
        Ok(()) => Ok(report),
        Err(e) if damaged => {
            report.push(damage(format!("the audit could not read on: {e}")));
            Ok(report)
        }
        Err(e) => Err(e),
    }
}

/// The checks of the record itself: chain, replay, state tables (the
/// chain is checked in the walk's first pass over the log).
fn record(
    journal: &Journal,
    progress: &indicatif::ProgressBar,
    report: &mut AuditReport,
) -> Result<(), JournalError> {
    report.journal_id = journal.journal_id()?;
    report.head = journal.chain_head()?;
    progress.set_length(report.head.as_ref().map_or(0, |h| h.seq.max(0) as u64));
    let mut walk = Walk::default();
    journal.each_collection_group(|part| walk.take(part, progress, report))?;
    walk.finish(report);
    Ok(())
}

/// The replay and comparison, one collection at a time
/// (`Journal::each_collection_group`): only the group in hand is held,
/// plus the few rows the log and the tables place in different groups.
#[derive(Default)]
struct Walk {
    replay: Replay,
    /// The last event seen.
    last_seq: i64,
    unknown: BTreeMap<String, u64>,
    records: BTreeMap<String, u64>,
    collections_without_ids: u64,
    /// Replayed rows no state row of their group matched.
    unmatched_log: StateTables,
    /// State rows no replayed row of their group matched.
    unmatched_table: StateTables,
}

/// How many unmatched rows of each side are held for pairing; past it
/// they are named unpaired, so a journal broken everywhere cannot make
/// the audit's memory grow with it.
const HELD_UNMATCHED: usize = LISTED_FINDINGS;

impl Walk {
    fn take(
        &mut self,
        part: AuditPart<'_>,
        progress: &indicatif::ProgressBar,
        report: &mut AuditReport,
    ) {
        match part {
            AuditPart::Chain(broken) => {
                if let Some(broken) = broken {
                    report.push(Finding {
                        check: "chain",
                        subject: format!("event {}", broken.seq),
                        detail: broken.why,
                    });
                }
            }
            AuditPart::Event {
                seq,
                kind,
                subject,
                payload,
            } => {
                progress.inc(1);
                self.last_seq = self.last_seq.max(seq);
                match self.replay.apply(seq, kind, subject, payload) {
                    Applied::State => {}
                    // Runner starts are bookkeeping of the runs themselves.
                    Applied::Record if kind == "runner.started" => {}
                    Applied::Record => *self.records.entry(kind.to_owned()).or_default() += 1,
                    Applied::Unknown => *self.unknown.entry(kind.to_owned()).or_default() += 1,
                }
            }
            AuditPart::Row { entity, id, row } => {
                let key = (entity.to_owned(), id);
                match self.replay.state.remove(&key) {
                    Some(expected) => compare(&key, &expected, &row, report),
                    None if self.unmatched_table.len() < HELD_UNMATCHED => {
                        self.unmatched_table.insert(key, row);
                    }
                    None => report.push(unmatched_table(&key)),
                }
            }
            AuditPart::End => {
                let replay = std::mem::take(&mut self.replay);
                for (subject, detail) in replay.problems {
                    report.push(Finding {
                        check: "state",
                        subject,
                        detail,
                    });
                }
                self.collections_without_ids += replay.collections_without_ids;
                for (key, expected) in replay.state {
                    match self.unmatched_table.remove(&key) {
                        Some(actual) => compare(&key, &expected, &actual, report),
                        None if self.unmatched_log.len() < HELD_UNMATCHED => {
                            self.unmatched_log.insert(key, expected);
                        }
                        None => report.push(unmatched_log(&key)),
                    }
                }
            }
        }
    }

    /// Pairs the rows the log and the tables placed in different groups,
    /// names what stays unmatched, and adds the notes.
    fn finish(mut self, report: &mut AuditReport) {
        report.events = self.last_seq;
        for (key, expected) in std::mem::take(&mut self.unmatched_log) {
            match self.unmatched_table.remove(&key) {
                Some(actual) => compare(&key, &expected, &actual, report),
                None => report.push(unmatched_log(&key)),
            }
        }
        for key in self.unmatched_table.keys() {
            report.push(unmatched_table(key));
        }
        for (kind, count) in self.records {
            report.notes.push(format!(
                "{count} `{kind}` events change no state table the replay checks"
            ));
        }
        for (kind, count) in self.unknown {
            report.notes.push(format!(
                "{count} `{kind}` events are of a kind this version does not know; they were not replayed"
            ));
        }
        if self.collections_without_ids > 0 {
            report.notes.push(format!(
                "{} collection events were written by an older chronicle without workflow_id and instance_id: those columns (and schedule_file, after an update) are not checked for their collections",
                self.collections_without_ids
            ));
        }
    }
}

/// Adds the findings of comparing the chain heads Postgres recorded for
/// this journal (`heads`) with the journal's events. `others` says whether
/// Postgres holds heads of other journals.
pub fn chain_heads(
    journal: &Journal,
    heads: &[ChainHead],
    others: bool,
    report: &mut AuditReport,
) -> Result<(), JournalError> {
    if heads.is_empty() {
        if others {
            report.push(Finding {
                check: "chain head",
                subject: format!("journal {}", report.journal_id),
                detail: "Postgres holds chain heads of other journals but none of this one: was the journal replaced?".into(),
            });
        } else {
            report.notes.push(
                "Postgres holds no chain head yet (no sync since chain heads were introduced)"
                    .into(),
            );
        }
        return Ok(());
    }
    for head in heads {
        match journal.event_hash(head.seq)? {
            None => report.push(Finding {
                check: "chain head",
                subject: format!("event {}", head.seq),
                detail: format!(
                    "Postgres saw the chain reach event {} ({}); the journal no longer holds it",
                    head.seq, head.hash
                ),
            }),
            Some(hash) if hash != head.hash => report.push(Finding {
                check: "chain head",
                subject: format!("event {}", head.seq),
                detail: format!(
                    "Postgres recorded hash {} for event {}; the journal now has {hash}: the chain was rewritten",
                    head.hash, head.seq
                ),
            }),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Names every column whose table value (`actual`) differs from the
/// replayed one. Columns the log does not carry for a row (old journals)
/// are not compared.
fn compare(
    key: &(String, String),
    expected: &StateRow,
    actual: &StateRow,
    report: &mut AuditReport,
) {
    let differing: Vec<String> = expected
        .iter()
        .filter(|(column, value)| actual.get(*column).is_some_and(|stored| stored != *value))
        .map(|(column, value)| {
            format!(
                "{column}: the log says {value}, the table holds {}",
                actual[column]
            )
        })
        .collect();
    if !differing.is_empty() {
        report.push(Finding {
            check: "state",
            subject: format!("{} {}", key.0, key.1),
            detail: differing.join("; "),
        });
    }
}

fn unmatched_table(key: &(String, String)) -> Finding {
    Finding {
        check: "state",
        subject: format!("{} {}", key.0, key.1),
        detail: "the state tables hold this row; no event created it".into(),
    }
}

fn unmatched_log(key: &(String, String)) -> Finding {
    Finding {
        check: "state",
        subject: format!("{} {}", key.0, key.1),
        detail: "the event log creates this row; the state tables do not hold it".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_past_the_listed_ones_are_counted_and_still_fail_the_audit() {
        let mut report = AuditReport::default();
        for i in 0..=LISTED_FINDINGS {
            report.push(Finding {
                check: "state",
                subject: format!("week {i}"),
                detail: "differs".into(),
            });
        }
        assert_eq!(report.findings.len(), LISTED_FINDINGS);
        assert_eq!(report.unlisted_findings, 1);
        report.findings.clear();
        assert!(!report.clean(), "an unlisted finding must still fail");
    }
}
