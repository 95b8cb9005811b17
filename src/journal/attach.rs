//! Attaching a schedule to a collection the application already has: the
//! collection takes that row's id (I5), and its weeks come into the journal
//! as the application left them, journaled as imported (`week.imported`)
//! with their execution rows, so a completed week is never submitted again
//! and a live one is polled, not repeated (I2).
//!
//! Owns the import's rows and events. Finding the application's collection
//! is the warehouse's; deciding to attach is `collect::attach`'s. Imported
//! rows are not queued for Postgres: what the application wrote stays as it
//! wrote it; only the collection row, which chronicle now keeps, is.

use chrono::NaiveDate;
use rusqlite::params;
use uuid::Uuid;

use super::events::{CollectionCreated, Event, ImportedExecution, WeekImported};
use super::outbox::Entity;
use super::{Journal, Result};
use crate::schedule::{Schedule, week};
use crate::warehouse::{AppCollection, AppWeek};

/// `triggered_by` of an attempt imported from the application.
pub const IMPORTED: &str = "imported";

/// The AMC status an imported attempt starts with: a live one is polled
/// for its status.
pub fn imported_amc_status(state: &str) -> Option<&'static str> {
    (state == "succeeded").then_some("SUCCEEDED")
}

/// What an attach brought in, for the command's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attached {
    /// The application's `collection_id`.
    pub readable_id: String,
    pub completed: usize,
    /// Live in AMC: resumed by polling.
    pub running: usize,
    /// Failed or pending: chronicle's to run.
    pub to_run: usize,
}

impl Journal {
    /// Records `schedule`'s collection as the application's `app` and
    /// imports its weeks, in one transaction. Weeks must start on the
    /// schedule's week day (`collect::attach` checks).
    pub fn attach(&self, schedule: &Schedule, app: &AppCollection) -> Result<Attached> {
        let start = app
            .weeks
            .iter()
            .map(|w| w.week_start)
            .min()
            .unwrap_or_else(|| week::align(app.start_date, schedule.week_start));
        let id = app.id;
        self.change(|c| {
            let seq = c.record(
                &id.to_string(),
                &Event::CollectionCreated(CollectionCreated {
                    name: schedule.name.clone(),
                    start_date: start,
                    schedule_file: schedule.file.display().to_string(),
                    schedule_hash: schedule.content_hash.clone(),
                    workflow_id: Some(schedule.workflow_id.clone()),
                    instance_id: Some(schedule.instance_id.clone()),
                    attached_from: Some(app.readable_id.clone()),
                }),
            )?;
            c.execute(
                "INSERT INTO collections (id, name, workflow_id, instance_id, start_date,
                     schedule_file, schedule_hash, created_at, updated_at, journal_seq,
                     readable_id, attached_from)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11)",
                params![
                    id.to_string(),
                    schedule.name,
                    schedule.workflow_id,
                    schedule.instance_id,
                    start.to_string(),
                    schedule.file.display().to_string(),
                    schedule.content_hash,
                    c.at,
                    seq,
                    app.readable_id,
                    serde_json::json!({"table": "report_data_collections", "collection_id": app.readable_id})
                        .to_string(),
                ],
            )?;
            c.mark(Entity::Collection, id, seq)?;
            let mut attached = Attached {
                readable_id: app.readable_id.clone(),
                ..Attached::default()
            };
            for week in &app.weeks {
                let imported = import_week(id, week);
                match imported.status.as_str() {
                    "completed" => attached.completed += 1,
                    "running" => attached.running += 1,
                    _ => attached.to_run += 1,
                }
                let seq = c.record(&week.id.to_string(), &Event::WeekImported(imported.clone()))?;
                c.execute(
                    "INSERT INTO weeks (id, collection_id, week_start, status, attempt_id, attempts,
                         started_at, completed_at, record_count, data_checksum, error_message,
                         created_at, updated_at, journal_seq)
                     VALUES (?1, ?2, ?3, ?4, NULL, 0, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
                    params![
                        week.id.to_string(),
                        id.to_string(),
                        week.week_start.to_string(),
                        imported.status,
                        week.started_at.map(super::sql::timestamp),
                        week.completed_at.map(super::sql::timestamp),
                        imported.record_count,
                        imported.data_checksum,
                        imported.error_message,
                        c.at,
                        seq
                    ],
                )?;
                if let Some(execution) = &imported.execution {
                    let request = serde_json::to_value(schedule.request(week.week_start))
                        .map_err(|e| {
                            rusqlite::Error::ToSqlConversionFailure(Box::new(e))
                        })?
                        .to_string();
                    let app_execution = week.execution.as_ref();
                    c.execute(
                        "INSERT INTO attempts (id, week_id, amc_execution_id, state, amc_status,
                             request, triggered_by, row_count, data_checksum, created_at,
                             submitted_at, completed_at, updated_at, journal_seq, readable_id)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                        params![
                            execution.id.to_string(),
                            week.id.to_string(),
                            execution.amc_execution_id,
                            execution.state,
                            imported_amc_status(&execution.state),
                            request,
                            IMPORTED,
                            execution.row_count,
                            imported.data_checksum,
                            app_execution
                                .and_then(|e| e.started_at)
                                .map(super::sql::timestamp)
                                .unwrap_or_else(|| c.at.clone()),
                            app_execution.and_then(|e| e.started_at).map(super::sql::timestamp),
                            app_execution.and_then(|e| e.completed_at).map(super::sql::timestamp),
                            c.at,
                            seq,
                            execution.readable_id,
                        ],
                    )?;
                    c.execute(
                        "UPDATE weeks SET attempt_id = ?1, attempts = 1 WHERE id = ?2",
                        params![execution.id.to_string(), week.id.to_string()],
                    )?;
                }
            }
            Ok(attached)
        })
    }
}

/// How one application week comes in: completed stays completed (with its
/// execution), a running one with an AMC id is live and polled, failed
/// stays failed (the runner retries it), anything else is pending.
fn import_week(collection_id: Uuid, week: &AppWeek) -> WeekImported {
    let execution = week.execution.as_ref();
    let amc_id = execution
        .and_then(|e| e.amc_execution_id.clone())
        .or_else(|| week.amc_execution_id.clone());
    let status = match week.status.as_str() {
        // The application's report dashboard reads `succeeded` too.
        "completed" | "succeeded" => "completed",
        "running" if execution.is_some() && amc_id.is_some() => "running",
        "failed" => "failed",
        _ => "pending",
    };
    let state = match status {
        "completed" => Some("succeeded"),
        "running" => Some("submitted"),
        _ => None,
    };
    WeekImported {
        collection_id,
        week_start: week.week_start,
        status: status.to_owned(),
        application_status: week.status.clone(),
        record_count: week.record_count.map(i64::from),
        data_checksum: week.data_checksum.clone(),
        error_message: week.error_message.clone(),
        execution: match (execution, state) {
            (Some(e), Some(state)) => Some(ImportedExecution {
                id: e.id,
                readable_id: e.readable_id.clone(),
                amc_execution_id: amc_id,
                state: state.to_owned(),
                row_count: e
                    .row_count
                    .map(i64::from)
                    .or(week.record_count.map(i64::from)),
            }),
            _ => None,
        },
    }
}

/// The first application week that does not start on the schedule's week
/// day, if any: such a collection cannot be continued week for week.
pub fn misaligned(schedule: &Schedule, app: &AppCollection) -> Option<NaiveDate> {
    app.weeks
        .iter()
        .map(|w| w.week_start)
        .find(|start| week::align(*start, schedule.week_start) != *start)
}
