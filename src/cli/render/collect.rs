//! What a collection run prints: the backfill summary and the sync line.
//!
//! Owns wording only; the figures are the run's and the sync's.

use crate::collect::backfill::Summary;
use crate::sync::Outcome as SyncOutcome;

pub fn backfill(name: &str, summary: &Summary) -> String {
    let mut out = String::new();
    if let Some(attached) = &summary.attached {
        out.push_str(&format!(
            "{name}: attached to the application's collection {}: {} completed weeks imported (never submitted again), {} live ones resumed, {} to run\n",
            attached.readable_id, attached.completed, attached.running, attached.to_run
        ));
    }
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
