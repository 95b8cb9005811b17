//! The tracking rows the reconciler sends, built from the state tables:
//! each row's current state plus the parents it references, so foreign keys
//! hold within one Postgres transaction. Attempts AMC never held are not
//! sent.
//!
//! Owns reading those rows (one statement per table per batch). Their shape
//! is `warehouse::rows`'.

use std::collections::BTreeSet;

use rusqlite::Connection;
use uuid::Uuid;

use super::sql::{bad_value, date_at, optional_time_at, parse_date, rows_by_id, time_at, uuid_at};
use crate::schedule::week;
use crate::warehouse::rows::{Batch, CollectionRow, ExecutionRow, WeekRow};

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

fn collection_rows(
    connection: &Connection,
    ids: &BTreeSet<String>,
) -> rusqlite::Result<Vec<CollectionRow>> {
    rows_by_id(
        connection,
            "SELECT c.id, c.name, c.workflow_id, c.instance_id, c.start_date, c.end_date,
                c.created_at, c.updated_at, c.journal_seq,
                (SELECT count(*) FROM weeks w WHERE w.collection_id = c.id AND w.status = 'completed'),
                (SELECT count(*) FROM weeks w WHERE w.collection_id = c.id AND w.status = 'failed'),
                (SELECT count(*) FROM weeks w WHERE w.collection_id = c.id
                   AND w.status IN ('pending', 'running'))
             FROM json_each(?1) j JOIN collections c ON c.id = j.value",
        ids,
        |row| {
                let end: Option<String> = row.get(5)?;
                let (completed, failed, open): (i32, i64, i64) =
                    (row.get(9)?, row.get(10)?, row.get(11)?);
                let status = if open > 0 {
                    "active"
                } else if failed > 0 {
                    "failed"
                } else {
                    "completed"
                };
                Ok(CollectionRow {
                    id: uuid_at(row, 0)?,
                    name: row.get(1)?,
                    workflow_id: row.get(2)?,
                    instance_id: row.get(3)?,
                    start_date: date_at(row, 4)?,
                    end_date: end.as_deref().and_then(parse_date),
                    status: status.to_owned(),
                    weeks_completed: completed,
                    created_at: time_at(row, 6)?,
                    updated_at: time_at(row, 7)?,
                    journal_seq: row.get(8)?,
                })
            },
    )
}

/// Leaves out attempts AMC never held (intents, abandoned ones): Postgres
/// tracks AMC executions, and those never existed there.
fn execution_rows(
    connection: &Connection,
    ids: &BTreeSet<String>,
) -> rusqlite::Result<Vec<ExecutionRow>> {
    rows_by_id(
        connection,
        "SELECT a.id, a.amc_execution_id, c.workflow_id, c.instance_id, a.state, a.amc_status,
                a.request, a.submitted_at, a.completed_at, a.row_count, a.error_message,
                a.triggered_by, a.created_at, a.updated_at, a.journal_seq
             FROM json_each(?1) j JOIN attempts a ON a.id = j.value
             JOIN weeks w ON w.id = a.week_id
             JOIN collections c ON c.id = w.collection_id
             WHERE a.state NOT IN ('intent', 'abandoned')",
        ids,
        |row| {
            let state: String = row.get(4)?;
            let amc_status: Option<String> = row.get(5)?;
            let request: String = row.get(6)?;
            let status = match state.as_str() {
                "succeeded" => "SUCCEEDED".to_owned(),
                _ => amc_status.unwrap_or_else(|| "PENDING".to_owned()),
            };
            Ok(ExecutionRow {
                id: uuid_at(row, 0)?,
                amc_execution_id: row.get(1)?,
                workflow_id: row.get(2)?,
                instance_id: row.get(3)?,
                status,
                execution_parameters: serde_json::from_str(&request).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        6,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
                started_at: optional_time_at(row, 7)?,
                completed_at: optional_time_at(row, 8)?,
                row_count: row.get(9)?,
                error_message: row.get(10)?,
                triggered_by: row.get(11)?,
                created_at: time_at(row, 12)?,
                updated_at: time_at(row, 13)?,
                journal_seq: row.get(14)?,
            })
        },
    )
}

fn week_rows(connection: &Connection, ids: &BTreeSet<String>) -> rusqlite::Result<Vec<WeekRow>> {
    rows_by_id(
        connection,
        "SELECT w.id, w.collection_id, w.week_start, w.status,
                CASE WHEN a.state IN ('intent', 'abandoned') THEN NULL ELSE a.id END,
                a.amc_execution_id, w.started_at, w.completed_at, w.record_count,
                w.data_checksum, w.error_message, w.created_at, w.updated_at, w.journal_seq
             FROM json_each(?1) j JOIN weeks w ON w.id = j.value
             LEFT JOIN attempts a ON a.id = w.attempt_id",
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
                created_at: time_at(row, 11)?,
                updated_at: time_at(row, 12)?,
                journal_seq: row.get(13)?,
            })
        },
    )
}
