//! The tracking rows the reconciler sends, built from the state tables:
//! each row's current state plus the parents it references, so foreign keys
//! hold within one Postgres transaction. Attempts AMC never held are not
//! sent.
//!
//! Owns reading those rows (one statement per table per batch) and the rule
//! of which attempts Postgres holds in which word (`execution_status`,
//! also what `lineage` applies to replayed state). Their shape is
//! `warehouse::rows`'.

use std::collections::BTreeSet;

use rusqlite::Connection;
use uuid::Uuid;

use super::Phase;
use super::sql::{
    bad_value, date_at, json_at, optional_json_at, optional_time_at, parse_date, rows_by_id,
    time_at, uuid_at,
};
use crate::amc::Status;
use crate::schedule::week;
use crate::warehouse::rows::{
    Batch, CollectionRow, CollectionStatus, ExecutionRow, ExecutionStatus, ResultColumns,
    WeekCounts, WeekRow, readable_collection_id, readable_execution_id,
};

/// What Postgres holds for an attempt in `phase` whose last AMC status
/// is `amc`; `None` when the attempt is never sent: AMC never held an
/// intent (yet) or an abandoned attempt, so Postgres has no execution
/// for it.
pub fn execution_status(phase: Phase, amc: Option<Status>) -> Option<ExecutionStatus> {
    Some(match phase {
        Phase::Intent | Phase::Abandoned => return None,
        Phase::Succeeded => ExecutionStatus::Completed,
        Phase::Failed if amc == Some(Status::Cancelled) => ExecutionStatus::Cancelled,
        Phase::Failed => ExecutionStatus::Failed,
        Phase::Submitted => match amc {
            None | Some(Status::Pending) => ExecutionStatus::Pending,
            Some(Status::Cancelled) => ExecutionStatus::Cancelled,
            Some(Status::Failed | Status::Rejected) => ExecutionStatus::Failed,
            // SUCCEEDED before the result is fetched, or a word this
            // build does not know: still running for the application.
            Some(Status::Running | Status::Succeeded | Status::Unknown) => ExecutionStatus::Running,
        },
    })
}

pub(super) fn rows_with_parents(
    connection: &Connection,
    mut collections: BTreeSet<String>,
    mut executions: BTreeSet<String>,
    weeks: BTreeSet<String>,
) -> rusqlite::Result<Batch> {
    let week_rows = week_rows(connection, &weeks)?;
    for week in &week_rows {
        collections.insert(week.collection_id.to_string());
        if let Some(execution) = week.execution_id {
            executions.insert(execution.to_string());
        }
    }
    Ok(Batch {
        collections: collection_rows(connection, &collections)?,
        executions: execution_rows(connection, &executions)?,
        weeks: week_rows,
    })
}

pub(super) fn collection_rows(
    connection: &Connection,
    ids: &BTreeSet<String>,
) -> rusqlite::Result<Vec<CollectionRow>> {
    // Counts from V7's running totals: a collection row costs the same
    // after 20 years of weeks as after one.
    rows_by_id(
        connection,
        "SELECT c.id, c.name, c.workflow_id, c.instance_id, c.start_date, c.end_date,
            c.created_at, c.updated_at, c.journal_seq, c.readable_id,
            (SELECT coalesce(sum(weeks), 0) FROM week_totals t
              WHERE t.collection_id = c.id AND t.status = 'pending'),
            (SELECT coalesce(sum(weeks), 0) FROM week_totals t
              WHERE t.collection_id = c.id AND t.status = 'running'),
            (SELECT coalesce(sum(weeks), 0) FROM week_totals t
              WHERE t.collection_id = c.id AND t.status = 'completed'),
            (SELECT coalesce(sum(weeks), 0) FROM week_totals t
              WHERE t.collection_id = c.id AND t.status = 'failed'),
            EXISTS (SELECT 1 FROM schedule_state s WHERE s.name = c.name AND s.paused = 1)
         FROM json_each(?1) j JOIN collections c ON c.id = j.value",
        ids,
        |row| {
            let id = uuid_at(row, 0)?;
            let start = date_at(row, 4)?;
            let end: Option<String> = row.get(5)?;
            let readable: Option<String> = row.get(9)?;
            let weeks = WeekCounts {
                pending: row.get(10)?,
                running: row.get(11)?,
                completed: row.get(12)?,
                failed: row.get(13)?,
            };
            let paused: bool = row.get(14)?;
            Ok(CollectionRow {
                id,
                readable_id: readable.unwrap_or_else(|| readable_collection_id(id)),
                name: row.get(1)?,
                workflow_id: row.get(2)?,
                instance_id: row.get(3)?,
                start_date: start,
                // Before its first week is due a collection covers none;
                // the application's end_date is NOT NULL.
                end_date: end
                    .as_deref()
                    .and_then(parse_date)
                    .unwrap_or_else(|| week::inclusive_end(start)),
                status: CollectionStatus::of(&weeks, paused),
                weeks,
                created_at: time_at(row, 6)?,
                updated_at: time_at(row, 7)?,
                journal_seq: row.get(8)?,
            })
        },
    )
}

/// Leaves out attempts AMC never held (intents, abandoned ones): Postgres
/// tracks AMC executions, and those never existed there.
pub(super) fn execution_rows(
    connection: &Connection,
    ids: &BTreeSet<String>,
) -> rusqlite::Result<Vec<ExecutionRow>> {
    rows_by_id(
        connection,
        "SELECT a.id, a.amc_execution_id, c.workflow_id, c.instance_id, a.state, a.amc_status,
                a.request, coalesce(a.submitted_at, a.created_at), a.completed_at, a.row_count,
                a.error_message, a.created_at, a.updated_at, a.journal_seq, a.readable_id,
                r.columns, r.sample_rows, r.total_rows, r.sample_size
             FROM json_each(?1) j JOIN attempts a ON a.id = j.value
             JOIN weeks w ON w.id = a.week_id
             JOIN collections c ON c.id = w.collection_id
             LEFT JOIN attempt_results r ON r.attempt_id = a.id
             WHERE a.state NOT IN ('intent', 'abandoned')",
        ids,
        |row| {
            let id = uuid_at(row, 0)?;
            let phase: String = row.get(4)?;
            let phase = Phase::parse(&phase).ok_or_else(|| bad_value(4, &phase))?;
            let amc_status: Option<String> = row.get(5)?;
            let status = execution_status(phase, amc_status.as_deref().map(Status::parse))
                .ok_or_else(|| bad_value(4, phase.as_str()))?;
            let readable: Option<String> = row.get(14)?;
            Ok(ExecutionRow {
                id,
                readable_id: readable.unwrap_or_else(|| readable_execution_id(id)),
                amc_execution_id: row.get(1)?,
                workflow_id: row.get(2)?,
                instance_id: row.get(3)?,
                status,
                execution_parameters: json_at(row, 6)?,
                started_at: optional_time_at(row, 7)?,
                completed_at: optional_time_at(row, 8)?,
                row_count: row.get(9)?,
                error_message: row.get(10)?,
                result: ResultColumns {
                    columns: optional_json_at(row, 15)?,
                    rows: optional_json_at(row, 16)?,
                    total_rows: row.get(17)?,
                    sample_size: row.get(18)?,
                },
                created_at: time_at(row, 11)?,
                updated_at: time_at(row, 12)?,
                journal_seq: row.get(13)?,
            })
        },
    )
}

pub(super) fn week_rows(
    connection: &Connection,
    ids: &BTreeSet<String>,
) -> rusqlite::Result<Vec<WeekRow>> {
    rows_by_id(
        connection,
        "SELECT w.id, w.collection_id, w.week_start, w.status,
                CASE WHEN a.state IN ('intent', 'abandoned') THEN NULL ELSE a.id END,
                a.amc_execution_id, w.started_at, w.completed_at, w.record_count,
                w.data_checksum, w.error_message, w.created_at, w.updated_at, w.journal_seq,
                CASE WHEN w.status = 'completed' THEN r.summary_stats END
             FROM json_each(?1) j JOIN weeks w ON w.id = j.value
             LEFT JOIN attempts a ON a.id = w.attempt_id
             LEFT JOIN attempt_results r ON r.attempt_id = w.attempt_id",
        ids,
        |row| {
            let start = date_at(row, 2)?;
            let execution: Option<String> = row.get(4)?;
            Ok(WeekRow {
                id: uuid_at(row, 0)?,
                collection_id: uuid_at(row, 1)?,
                week_start_date: start,
                week_end_date: week::inclusive_end(start),
                status: row.get(3)?,
                execution_id: execution
                    .map(|e| Uuid::parse_str(&e).map_err(|_| bad_value(4, &e)))
                    .transpose()?,
                amc_execution_id: row.get(5)?,
                started_at: optional_time_at(row, 6)?,
                completed_at: optional_time_at(row, 7)?,
                record_count: row.get(8)?,
                data_checksum: row.get(9)?,
                error_message: row.get(10)?,
                summary_stats: optional_json_at(row, 14)?,
                created_at: time_at(row, 11)?,
                updated_at: time_at(row, 12)?,
                journal_seq: row.get(13)?,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amc_words_become_the_applications_and_unsent_attempts_have_none() {
        let of = execution_status;
        assert_eq!(of(Phase::Intent, None), None);
        assert_eq!(of(Phase::Abandoned, Some(Status::Running)), None);
        assert_eq!(
            of(Phase::Succeeded, Some(Status::Succeeded)),
            Some(ExecutionStatus::Completed)
        );
        assert_eq!(
            of(Phase::Submitted, Some(Status::Unknown)),
            Some(ExecutionStatus::Running)
        );
        assert_eq!(
            of(Phase::Failed, Some(Status::Rejected)),
            Some(ExecutionStatus::Failed)
        );
        assert_eq!(
            of(Phase::Failed, Some(Status::Cancelled)),
            Some(ExecutionStatus::Cancelled)
        );
        // SUCCEEDED in AMC but the result not fetched yet: still running
        // for the application's poller.
        assert_eq!(
            of(Phase::Submitted, Some(Status::Succeeded)),
            Some(ExecutionStatus::Running)
        );
    }
}
