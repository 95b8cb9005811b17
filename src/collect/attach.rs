//! What collecting asks of Postgres before anything is submitted to AMC:
//! whether it can take the schedules' rows (the application's workflow and
//! instance rows exist, its columns are of types chronicle writes), and,
//! for a schedule new to the journal, whether the application already has
//! its collection, which it then attaches to instead of making a second
//! one and paying AMC again for weeks already collected.
//!
//! Owns that order and its errors. The checks are the warehouse's; the
//! import is the journal's.

use crate::journal::{Attached, Journal, JournalError, identity, misaligned};
use crate::schedule::Schedule;
use crate::settings::Settings;
use crate::warehouse::{CollectionQuery, Warehouse, WarehouseError};

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// Postgres cannot take the rows: exit 2 before any AMC call.
    #[error("{0}")]
    Schema(WarehouseError),
    #[error(
        "schedule {schedule}: key `week_start`: the application's collection {collection} has a week starting {week} ({weekday}), which is not a {wanted} week; set week_start to match it, or name another collection"
    )]
    Misaligned {
        schedule: String,
        collection: String,
        week: chrono::NaiveDate,
        weekday: chrono::Weekday,
        wanted: chrono::Weekday,
    },
    /// The schedule names an application collection (`collection_id`) and
    /// Postgres cannot be asked for it: nothing is submitted rather than
    /// risk paying twice for weeks it holds.
    #[error(
        "schedule `{schedule}` names an application collection the journal has not attached yet, and Postgres cannot be asked for it ({why}); nothing was submitted, run again once Postgres is reachable"
    )]
    CannotAsk { schedule: String, why: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl PreflightError {
    /// The user must fix something (the database or a schedule file).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            PreflightError::Schema(_) | PreflightError::Misaligned { .. }
        )
    }
}

/// What the preflight found.
#[derive(Debug, Default)]
pub struct Preflight {
    /// Collections attached to, by schedule name. Empty too when Postgres
    /// could not be asked: collection then goes on offline (logged) for
    /// the schedules the journal already knows.
    pub attached: Vec<(String, Attached)>,
}

/// Checks `schedules` against Postgres and attaches the new ones that the
/// application already collects. Without `postgres.url` nothing is asked.
pub async fn preflight(
    settings: &Settings,
    journal: &Journal,
    schedules: &[&Schedule],
) -> Result<Preflight, PreflightError> {
    let Some(target) = settings.postgres_target() else {
        return Ok(Preflight::default());
    };
    let mut warehouse = match Warehouse::open(&target).await {
        Ok(warehouse) => warehouse,
        Err(e @ WarehouseError::Schema(_)) => return Err(PreflightError::Schema(e)),
        Err(e) => {
            let why = e.to_string();
            // Naming the application's collection asks for it: nothing is
            // submitted until it is attached.
            if let Some(new) = first_new(journal, schedules)?.filter(|s| s.collection_id.is_some())
            {
                return Err(PreflightError::CannotAsk {
                    schedule: new.name.clone(),
                    why,
                });
            }
            if let Some(new) = first_new(journal, schedules)? {
                tracing::warn!(schedule = %new.name, "Postgres is away: cannot check whether the application already collects this schedule's workflow; collecting as a new collection (hand a collection over first, README \"Taking over a collection\")");
            }
            tracing::warn!(error = %why, "Postgres is away: collecting offline, the journal keeps every change");
            return Ok(Preflight::default());
        }
    };
    let pairs: Vec<(&str, &str)> = schedules
        .iter()
        .map(|s| (s.workflow_id.as_str(), s.instance_id.as_str()))
        .collect();
    warehouse.preflight(&pairs).await.map_err(|e| match e {
        e @ WarehouseError::Schema(_) => PreflightError::Schema(e),
        other => PreflightError::CannotAsk {
            schedule: schedules
                .first()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            why: other.to_string(),
        },
    })?;
    let mut found = Preflight::default();
    for schedule in schedules {
        if journal.collection_of(&schedule.name)?.is_some() {
            continue;
        }
        let taken = journal.collection_ids()?;
        let query = CollectionQuery {
            schedule: &schedule.name,
            own_id: identity::collection_id(&schedule.name),
            workflow_id: &schedule.workflow_id,
            instance_id: &schedule.instance_id,
            named: schedule.collection_id.as_deref(),
            taken: &taken,
        };
        let app = match warehouse.find_collection(&query).await {
            Ok(app) => app,
            Err(e @ WarehouseError::Schema(_)) => return Err(PreflightError::Schema(e)),
            Err(e) => {
                return Err(PreflightError::CannotAsk {
                    schedule: schedule.name.clone(),
                    why: e.to_string(),
                });
            }
        };
        let Some(app) = app else { continue };
        if let Some(week) = misaligned(schedule, &app) {
            use chrono::Datelike;
            return Err(PreflightError::Misaligned {
                schedule: schedule.file.display().to_string(),
                collection: app.readable_id.clone(),
                week,
                weekday: week.weekday(),
                wanted: schedule.week_start,
            });
        }
        let attached = journal.attach(schedule, &app)?;
        tracing::info!(
            schedule = %schedule.name,
            collection = %attached.readable_id,
            completed = attached.completed,
            running = attached.running,
            to_run = attached.to_run,
            "attached to the application's collection"
        );
        found.attached.push((schedule.name.clone(), attached));
    }
    Ok(found)
}

/// The first schedule the journal holds no collection for.
fn first_new<'s>(
    journal: &Journal,
    schedules: &[&'s Schedule],
) -> Result<Option<&'s Schedule>, JournalError> {
    for schedule in schedules {
        if journal.collection_of(&schedule.name)?.is_none() {
            return Ok(Some(schedule));
        }
    }
    Ok(None)
}
