//! Planning: which weeks of a schedule's collection exist and are due.
//! Records the collection (I5 ids), fixes or extends its start, adds the
//! weeks that became due, and hands the runner every week needing work,
//! with the attempt an earlier process left open.
//!
//! Owns the collection and week rows' creation. The week rules themselves
//! are `schedule::week`'s; what happens to a week afterwards is `attempts`'.

use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::attempts::{OPEN_ATTEMPT_COLUMNS, WorkItem, open_attempt_offset};
use super::events::{CollectionCreated, CollectionUpdated, Event, WeekAdded};
use super::outbox::Entity;
use super::sql::{date_at, parse_date, uuid_at};
use super::{Journal, Result, identity};
use crate::schedule::{Schedule, week};

/// What planning decided, for logs and the summary.
#[derive(Debug, Clone)]
pub struct Plan {
    pub collection_id: Uuid,
    pub start_date: NaiveDate,
    pub weeks_added: usize,
    pub work: Vec<WorkItem>,
}

impl Journal {
    /// Records the collection for `schedule`, fixes or extends its start,
    /// adds the weeks that became due, and returns every week needing work.
    pub fn plan(&self, schedule: &Schedule, today: NaiveDate) -> Result<Plan> {
        let configured = week::configured_start(schedule, today);
        let latest = week::latest_due(today, schedule.week_start, schedule.data_lag_days);
        let (collection_id, start_date, weeks_added) = self.change(|c| {
            // By name: an attached collection has the application's id.
            let stored: Option<(Uuid, String, String)> = c
                .tx
                .query_row(
                    "SELECT id, start_date, schedule_hash FROM collections WHERE name = ?1",
                    [&schedule.name],
                    |row| Ok((uuid_at(row, 0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            let collection_id = stored
                .as_ref()
                .map_or_else(|| identity::collection_id(&schedule.name), |s| s.0);
            let end_date = (latest >= configured).then(|| week::inclusive_end(latest));
            let start = match &stored {
                None => {
                    let seq = c.record(
                        &collection_id.to_string(),
                        &Event::CollectionCreated(CollectionCreated {
                            name: schedule.name.clone(),
                            start_date: configured,
                            schedule_file: schedule.file.display().to_string(),
                            schedule_hash: schedule.content_hash.clone(),
                            workflow_id: Some(schedule.workflow_id.clone()),
                            instance_id: Some(schedule.instance_id.clone()),
                            attached_from: None,
                        }),
                    )?;
                    c.execute(
                        "INSERT INTO collections (id, name, workflow_id, instance_id, start_date,
                             end_date, schedule_file, schedule_hash, created_at, updated_at, journal_seq)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
                        params![
                            collection_id.to_string(),
                            schedule.name,
                            schedule.workflow_id,
                            schedule.instance_id,
                            configured.to_string(),
                            end_date.map(|d| d.to_string()),
                            schedule.file.display().to_string(),
                            schedule.content_hash,
                            c.at,
                            seq
                        ],
                    )?;
                    c.mark(Entity::Collection, collection_id, seq)?;
                    configured
                }
                Some((_, stored_start, stored_hash)) => {
                    let stored_start = parse_date(stored_start).unwrap_or(configured);
                    // The start only ever moves earlier: nothing collected is dropped.
                    let start = stored_start.min(configured);
                    if start != stored_start || *stored_hash != schedule.content_hash {
                        let seq = c.record(
                            &collection_id.to_string(),
                            &Event::CollectionUpdated(CollectionUpdated {
                                start_date: start,
                                previous_start_date: stored_start,
                                schedule_hash: schedule.content_hash.clone(),
                                workflow_id: Some(schedule.workflow_id.clone()),
                                instance_id: Some(schedule.instance_id.clone()),
                                schedule_file: Some(schedule.file.display().to_string()),
                            }),
                        )?;
                        c.execute(
                            "UPDATE collections SET start_date = ?1, schedule_hash = ?2,
                                 schedule_file = ?3, workflow_id = ?4, instance_id = ?5,
                                 updated_at = ?6, journal_seq = ?7
                             WHERE id = ?8",
                            params![
                                start.to_string(),
                                schedule.content_hash,
                                schedule.file.display().to_string(),
                                schedule.workflow_id,
                                schedule.instance_id,
                                c.at,
                                seq,
                                collection_id.to_string()
                            ],
                        )?;
                        c.mark(Entity::Collection, collection_id, seq)?;
                    }
                    start
                }
            };
            let mut added = 0;
            let recorded = recorded_run(c.tx, collection_id)?;
            for week_start in week::due_weeks(start, latest) {
                if recorded.is_some_and(|(first, last)| {
                    first <= week_start
                        && week_start <= last
                        && (week_start - first).num_days() % 7 == 0
                }) {
                    continue;
                }
                // By start: a week imported from the application keeps its id.
                let exists: bool = c
                    .tx
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM weeks
                                        WHERE collection_id = ?1 AND week_start = ?2)",
                    )?
                    .query_row(
                        params![collection_id.to_string(), week_start.to_string()],
                        |row| row.get(0),
                    )?;
                if exists {
                    continue;
                }
                let week_id = identity::week_id(collection_id, week_start);
                let seq = c.record(
                    &week_id.to_string(),
                    &Event::WeekAdded(WeekAdded {
                        collection_id,
                        week_start,
                    }),
                )?;
                c.execute(
                    "INSERT INTO weeks (id, collection_id, week_start, status, created_at,
                         updated_at, journal_seq)
                     VALUES (?1, ?2, ?3, 'pending', ?4, ?4, ?5)",
                    params![
                        week_id.to_string(),
                        collection_id.to_string(),
                        week_start.to_string(),
                        c.at,
                        seq
                    ],
                )?;
                c.mark(Entity::Week, week_id, seq)?;
                added += 1;
            }
            if let Some(end) = end_date {
                c.execute(
                    "UPDATE collections SET end_date = ?1 WHERE id = ?2 AND end_date IS NOT ?1",
                    params![end.to_string(), collection_id.to_string()],
                )?;
            }
            Ok((collection_id, start, added))
        })?;
        let work = self.work(collection_id)?;
        Ok(Plan {
            collection_id,
            start_date,
            weeks_added,
            work,
        })
    }

    /// The id of the collection recorded for the schedule `name`, if any
    /// (an attached one has the application's id, not `collection_id(name)`).
    pub fn collection_of(&self, name: &str) -> Result<Option<Uuid>> {
        let connection = self.lock();
        connection
            .query_row(
                "SELECT id FROM collections WHERE name = ?1",
                [name],
                |row| uuid_at(row, 0),
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    /// Every collection this journal holds: none is attached twice.
    pub fn collection_ids(&self) -> Result<Vec<Uuid>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare("SELECT id FROM collections")
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([], |row| uuid_at(row, 0))
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sqlite(e))
    }

    /// A consistent copy of the journal at `path` (`VACUUM INTO`), for
    /// looking at what a run would do without touching the journal itself.
    pub fn copy_to(&self, path: &std::path::Path) -> Result<()> {
        let connection = self.lock();
        connection
            .execute("VACUUM INTO ?1", [path.display().to_string()])
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// Weeks of a collection that are not completed, oldest first, each with
    /// the attempt an earlier process left unfinished, if any. The statuses
    /// are named as V10's partial index of weeks to do names them, and the
    /// index is required, so only these weeks are read, already in week
    /// order: left to itself SQLite may walk the collection's whole history
    /// (BENCHMARKS.md, scale).
    pub fn work(&self, collection_id: Uuid) -> Result<Vec<WorkItem>> {
        let connection = self.lock();
        let query = format!(
            "SELECT w.id, w.week_start, {OPEN_ATTEMPT_COLUMNS}
             FROM weeks w INDEXED BY weeks_to_do
             LEFT JOIN attempts a ON a.id = w.attempt_id AND a.state IN ('intent', 'submitted')
             WHERE w.collection_id = ?1 AND w.status IN ('pending', 'running', 'failed')
             ORDER BY w.week_start"
        );
        let mut statement = connection.prepare(&query).map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([collection_id.to_string()], |row| {
                let attempt_id: Option<String> = row.get(2)?;
                Ok(WorkItem {
                    week_id: uuid_at(row, 0)?,
                    week_start: date_at(row, 1)?,
                    open_attempt: match attempt_id {
                        None => None,
                        Some(_) => Some(open_attempt_offset(row, 2)?),
                    },
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sqlite(e))
    }
}

/// `(first, last)` when the collection's recorded weeks are exactly every
/// seventh day from `first` through `last`, as planning leaves them (it
/// adds every due week from the start on, and the start only moves
/// earlier): planning then looks up only weeks outside that run, so a
/// firing costs the same after 20 years as after one week (BENCHMARKS.md,
/// scale): the ends come from the index, the count from the totals V7's
/// triggers keep. `None` (say, after `week_start` changed) means check
/// each week.
fn recorded_run(
    tx: &Connection,
    collection_id: Uuid,
) -> rusqlite::Result<Option<(NaiveDate, NaiveDate)>> {
    let (first, last, count): (Option<String>, Option<String>, i64) = tx
        .prepare_cached(
            // One min() or max() per query: SQLite reads only the end
            // of the index for it, but scans the range for both at once.
            "SELECT (SELECT min(week_start) FROM weeks WHERE collection_id = ?1),
                 (SELECT max(week_start) FROM weeks WHERE collection_id = ?1),
                 (SELECT coalesce(sum(weeks), 0) FROM week_totals WHERE collection_id = ?1)",
        )?
        .query_row([collection_id.to_string()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    let (Some(first), Some(last)) = (
        first.as_deref().and_then(parse_date),
        last.as_deref().and_then(parse_date),
    ) else {
        return Ok(None);
    };
    let span = (last - first).num_days();
    Ok((span % 7 == 0 && span / 7 + 1 == count).then_some((first, last)))
}
