//! State transitions. Each public method is one IMMEDIATE transaction that
//! changes the state tables, appends one event to the chain and marks the
//! changed rows in the outbox, all under the event's sequence number.

use chrono::{NaiveDate, Utc};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::json;
use uuid::Uuid;

use super::{
    Journal, OpenAttempt, OutboxEntry, Phase, Result, WorkItem, chain, parse_date, timestamp,
};
use crate::amc::result::Summary as ResultSummary;
use crate::amc::{CreateExecution, Execution, Status};
use crate::journal::identity;
use crate::schedule::Schedule;
use crate::schedule::week;

/// An open attempt `chronicle cancel` may end, with where it belongs.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    /// The attempt to end; its AMC id is what is cancelled.
    pub attempt: OpenAttempt,
    /// The collection's name, for the user.
    pub collection: String,
    /// Where the execution lives in AMC.
    pub instance_id: String,
    /// For the user, and to tell several matches apart.
    pub week_start: NaiveDate,
}

/// What planning decided, for logs and the summary.
#[derive(Debug, Clone)]
pub struct Plan {
    pub collection_id: Uuid,
    pub start_date: NaiveDate,
    pub weeks_added: usize,
    pub work: Vec<WorkItem>,
}

enum Entity {
    Collection,
    Execution,
    Week,
}

impl Entity {
    fn as_str(&self) -> &'static str {
        match self {
            Entity::Collection => "collection",
            Entity::Execution => "execution",
            Entity::Week => "week",
        }
    }
}

/// One transaction in progress: the event it records and the rows it marks.
struct Change<'c> {
    tx: Transaction<'c>,
    at: String,
}

impl Change<'_> {
    /// `execute` through the connection's statement cache: these statements
    /// run on every commit, and compiling them each time cost about as much
    /// as the commit's fsync (BENCHMARKS.md, journal).
    fn execute(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.tx.prepare_cached(sql)?.execute(params)
    }

    fn event(
        &self,
        kind: &str,
        subject: Uuid,
        payload: serde_json::Value,
    ) -> rusqlite::Result<i64> {
        chain::append(&self.tx, &self.at, kind, &subject.to_string(), &payload)
    }

    fn mark(&self, entity: Entity, id: Uuid, seq: i64) -> rusqlite::Result<()> {
        self.execute(
            "INSERT INTO outbox (entity, entity_id, seq, queued_at) VALUES (?1, ?2, ?3, ?4)",
            params![entity.as_str(), id.to_string(), seq, self.at],
        )?;
        Ok(())
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
        &self,
        collection_id: Uuid,
    ) -> rusqlite::Result<Option<(NaiveDate, NaiveDate)>> {
        let (first, last, count): (Option<String>, Option<String>, i64) = self
            .tx
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

    /// A week's outcome changes its collection's counts and status.
    fn touch_collection_of_week(&self, week_id: Uuid, seq: i64) -> rusqlite::Result<()> {
        let collection: String = self
            .tx
            .prepare_cached("SELECT collection_id FROM weeks WHERE id = ?1")?
            .query_row([week_id.to_string()], |row| row.get(0))?;
        self.execute(
            "UPDATE collections SET updated_at = ?1, journal_seq = ?2 WHERE id = ?3",
            params![self.at, seq, collection],
        )?;
        let id = Uuid::parse_str(&collection).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?;
        self.mark(Entity::Collection, id, seq)
    }
}

impl Journal {
    fn change<T>(&self, apply: impl FnOnce(&Change<'_>) -> rusqlite::Result<T>) -> Result<T> {
        let mut connection = self.lock();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sqlite(e))?;
        let change = Change {
            tx,
            at: timestamp(Utc::now()),
        };
        let value = apply(&change).map_err(|e| self.sqlite(e))?;
        change.tx.commit().map_err(|e| self.sqlite(e))?;
        Ok(value)
    }

    /// Records the collection for `schedule`, fixes or extends its start,
    /// adds the weeks that became due, and returns every week needing work.
    pub fn plan(&self, schedule: &Schedule, today: NaiveDate) -> Result<Plan> {
        let collection_id = identity::collection_id(&schedule.name);
        let configured = week::configured_start(schedule, today);
        let latest = week::latest_due(today, schedule.week_start, schedule.data_lag_days);
        let (start_date, weeks_added) = self.change(|c| {
            let stored: Option<(String, String)> = c
                .tx
                .query_row(
                    "SELECT start_date, schedule_hash FROM collections WHERE id = ?1",
                    [collection_id.to_string()],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let end_date = (latest >= configured).then(|| week::inclusive_end(latest));
            let start = match &stored {
                None => {
                    let seq = c.event(
                        "collection.created",
                        collection_id,
                        json!({
                            "name": schedule.name,
                            "start_date": configured,
                            "schedule_file": schedule.file.display().to_string(),
                            "schedule_hash": schedule.content_hash,
                            "workflow_id": schedule.workflow_id,
                            "instance_id": schedule.instance_id,
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
                Some((stored_start, stored_hash)) => {
                    let stored_start = parse_date(stored_start).unwrap_or(configured);
                    // The start only ever moves earlier: nothing collected is dropped.
                    let start = stored_start.min(configured);
                    if start != stored_start || *stored_hash != schedule.content_hash {
                        let seq = c.event(
                            "collection.updated",
                            collection_id,
                            json!({
                                "start_date": start,
                                "previous_start_date": stored_start,
                                "schedule_hash": schedule.content_hash,
                                "workflow_id": schedule.workflow_id,
                                "instance_id": schedule.instance_id,
                                "schedule_file": schedule.file.display().to_string(),
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
            let recorded = c.recorded_run(collection_id)?;
            for week_start in week::due_weeks(start, latest) {
                if recorded.is_some_and(|(first, last)| {
                    first <= week_start
                        && week_start <= last
                        && (week_start - first).num_days() % 7 == 0
                }) {
                    continue;
                }
                let week_id = identity::week_id(collection_id, week_start);
                let exists: bool = c
                    .tx
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM weeks WHERE id = ?1)")?
                    .query_row([week_id.to_string()], |row| row.get(0))?;
                if exists {
                    continue;
                }
                let seq = c.event(
                    "week.added",
                    week_id,
                    json!({"collection_id": collection_id, "week_start": week_start}),
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
            Ok((start, added))
        })?;
        let work = self.work(collection_id)?;
        Ok(Plan {
            collection_id,
            start_date,
            weeks_added,
            work,
        })
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

    /// Open attempts matched by a week date (`YYYY-MM-DD`), an attempt id or
    /// an AMC execution id: what `chronicle cancel` may end.
    pub fn cancel_targets(&self, key: &str) -> Result<Vec<CancelTarget>> {
        let connection = self.lock();
        let query = format!(
            "SELECT c.name, c.instance_id, w.week_start, {}
             FROM attempts a JOIN weeks w ON w.id = a.week_id
             JOIN collections c ON c.id = w.collection_id
             WHERE a.state IN ('intent', 'submitted')
               AND (a.id = ?1 OR a.amc_execution_id = ?1 OR w.week_start = ?1)
             ORDER BY c.name, w.week_start",
            super::read::OPEN_ATTEMPT_COLUMNS
        );
        let mut statement = connection.prepare(&query).map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([key.trim()], |row| {
                let week: String = row.get(2)?;
                Ok(CancelTarget {
                    collection: row.get(0)?,
                    instance_id: row.get(1)?,
                    week_start: parse_date(&week).ok_or_else(|| {
                        rusqlite::Error::FromSqlConversionFailure(
                            2,
                            rusqlite::types::Type::Text,
                            format!("`{week}` is not a date").into(),
                        )
                    })?,
                    attempt: super::read::open_attempt_offset(row, 3)?,
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sqlite(e))
    }

    /// Journals the intent to submit `request` for a week (I1): committed
    /// and fsynced before the POST is sent.
    pub fn record_intent(
        &self,
        week_id: Uuid,
        request: &CreateExecution,
        triggered_by: &str,
    ) -> Result<OpenAttempt> {
        let attempt_id = identity::attempt_id();
        let request_json =
            serde_json::to_value(request).map_err(|e| self.invalid(e.to_string()))?;
        let created_at = Utc::now();
        self.change(|c| {
            let seq = c.event(
                "attempt.intent",
                attempt_id,
                json!({"week_id": week_id, "request": request_json, "triggered_by": triggered_by}),
            )?;
            c.execute(
                "INSERT INTO attempts (id, week_id, state, request, triggered_by, created_at,
                     updated_at, journal_seq)
                 VALUES (?1, ?2, 'intent', ?3, ?4, ?5, ?5, ?6)",
                params![
                    attempt_id.to_string(),
                    week_id.to_string(),
                    request_json.to_string(),
                    triggered_by,
                    c.at,
                    seq
                ],
            )?;
            c.execute(
                "UPDATE weeks SET status = 'running', attempt_id = ?1, attempts = attempts + 1,
                     started_at = ?2, completed_at = NULL, error_message = NULL,
                     updated_at = ?2, journal_seq = ?3
                 WHERE id = ?4",
                params![attempt_id.to_string(), c.at, seq, week_id.to_string()],
            )?;
            c.mark(Entity::Week, week_id, seq)
        })?;
        Ok(OpenAttempt {
            id: attempt_id,
            week_id,
            phase: Phase::Intent,
            amc_execution_id: None,
            amc_status: None,
            request: request.clone(),
            created_at,
        })
    }

    /// Journals AMC's execution id for an attempt (I1: before anything
    /// depends on it). `adopted` says it was found by listing, not answered.
    pub fn record_submitted(
        &self,
        attempt: &mut OpenAttempt,
        execution: &Execution,
        adopted: bool,
    ) -> Result<()> {
        let kind = if adopted {
            "attempt.adopted"
        } else {
            "attempt.submitted"
        };
        self.change(|c| {
            let seq = c.event(
                kind,
                attempt.id,
                json!({
                    "amc_execution_id": execution.workflow_execution_id,
                    "status": execution.status.as_str(),
                }),
            )?;
            c.execute(
                "UPDATE attempts SET state = 'submitted', amc_execution_id = ?1, amc_status = ?2,
                     submitted_at = ?3, updated_at = ?3, journal_seq = ?4
                 WHERE id = ?5",
                params![
                    execution.workflow_execution_id,
                    execution.status.as_str(),
                    c.at,
                    seq,
                    attempt.id.to_string()
                ],
            )?;
            c.execute(
                "UPDATE weeks SET updated_at = ?1, journal_seq = ?2 WHERE id = ?3",
                params![c.at, seq, attempt.week_id.to_string()],
            )?;
            c.mark(Entity::Execution, attempt.id, seq)?;
            c.mark(Entity::Week, attempt.week_id, seq)
        })?;
        attempt.phase = Phase::Submitted;
        attempt.amc_execution_id = Some(execution.workflow_execution_id.clone());
        attempt.amc_status = Some(execution.status);
        Ok(())
    }

    /// Journals a status AMC reported, once per change.
    pub fn record_status(&self, attempt: &mut OpenAttempt, status: Status) -> Result<()> {
        if attempt.amc_status == Some(status) {
            return Ok(());
        }
        self.change(|c| {
            let seq = c.event(
                "attempt.status",
                attempt.id,
                json!({"status": status.as_str()}),
            )?;
            c.execute(
                "UPDATE attempts SET amc_status = ?1, updated_at = ?2, journal_seq = ?3
                 WHERE id = ?4",
                params![status.as_str(), c.at, seq, attempt.id.to_string()],
            )?;
            c.mark(Entity::Execution, attempt.id, seq)
        })?;
        attempt.amc_status = Some(status);
        Ok(())
    }

    /// The result was fetched and checked: the attempt and its week are done.
    pub fn record_succeeded(&self, attempt: &OpenAttempt, result: &ResultSummary) -> Result<()> {
        let record_count = result.record_count;
        let data_checksum = result.checksum.as_str();
        let count = i64::try_from(record_count).map_err(|e| self.invalid(e.to_string()))?;
        self.change(|c| {
            let seq = c.event(
                "attempt.succeeded",
                attempt.id,
                json!({
                    "week_id": attempt.week_id,
                    "amc_execution_id": attempt.amc_execution_id,
                    "record_count": record_count,
                    "data_checksum": data_checksum,
                }),
            )?;
            c.execute(
                "UPDATE attempts SET state = 'succeeded', amc_status = 'SUCCEEDED', row_count = ?1,
                     data_checksum = ?2, completed_at = ?3, updated_at = ?3, journal_seq = ?4
                 WHERE id = ?5",
                params![count, data_checksum, c.at, seq, attempt.id.to_string()],
            )?;
            c.execute(
                "UPDATE weeks SET status = 'completed', record_count = ?1, data_checksum = ?2,
                     completed_at = ?3, error_message = NULL, updated_at = ?3, journal_seq = ?4
                 WHERE id = ?5",
                params![count, data_checksum, c.at, seq, attempt.week_id.to_string()],
            )?;
            c.mark(Entity::Execution, attempt.id, seq)?;
            c.mark(Entity::Week, attempt.week_id, seq)?;
            c.touch_collection_of_week(attempt.week_id, seq)
        })
    }

    /// The attempt ended without a result. With `retry`, the week goes back
    /// to pending for a new attempt; otherwise the week has failed.
    pub fn record_failed(
        &self,
        attempt: &OpenAttempt,
        status: Status,
        message: &str,
        retry: bool,
    ) -> Result<()> {
        self.record_ended(attempt, "attempt.failed", status, message, retry)
    }

    /// A person cancelled the attempt's execution in AMC (`chronicle
    /// cancel`): the attempt ends CANCELLED; the week goes back to pending,
    /// or is failed when `fail_week`.
    pub fn record_cancelled(
        &self,
        attempt: &OpenAttempt,
        message: &str,
        fail_week: bool,
    ) -> Result<()> {
        self.record_ended(
            attempt,
            "attempt.cancelled",
            Status::Cancelled,
            message,
            !fail_week,
        )
    }

    fn record_ended(
        &self,
        attempt: &OpenAttempt,
        kind: &str,
        status: Status,
        message: &str,
        retry: bool,
    ) -> Result<()> {
        self.change(|c| {
            let seq = c.event(
                kind,
                attempt.id,
                json!({
                    "week_id": attempt.week_id,
                    "amc_execution_id": attempt.amc_execution_id,
                    "status": status.as_str(),
                    "error": message,
                    "week_failed": !retry,
                }),
            )?;
            c.execute(
                "UPDATE attempts SET state = 'failed', amc_status = ?1, error_message = ?2,
                     completed_at = ?3, updated_at = ?3, journal_seq = ?4
                 WHERE id = ?5",
                params![status.as_str(), message, c.at, seq, attempt.id.to_string()],
            )?;
            c.execute(
                "UPDATE weeks SET status = ?1, error_message = ?2, completed_at = ?3,
                     updated_at = ?4, journal_seq = ?5
                 WHERE id = ?6",
                params![
                    if retry { "pending" } else { "failed" },
                    message,
                    (!retry).then_some(c.at.as_str()),
                    c.at,
                    seq,
                    attempt.week_id.to_string()
                ],
            )?;
            c.mark(Entity::Execution, attempt.id, seq)?;
            c.mark(Entity::Week, attempt.week_id, seq)?;
            c.touch_collection_of_week(attempt.week_id, seq)
        })
    }

    /// AMC holds no execution for this intent: the week may be submitted
    /// again without paying twice.
    pub fn record_abandoned(&self, attempt: &OpenAttempt, reason: &str) -> Result<()> {
        self.change(|c| {
            let seq = c.event(
                "attempt.abandoned",
                attempt.id,
                json!({"week_id": attempt.week_id, "reason": reason}),
            )?;
            c.execute(
                "UPDATE attempts SET state = 'abandoned', error_message = ?1, completed_at = ?2,
                     updated_at = ?2, journal_seq = ?3
                 WHERE id = ?4",
                params![reason, c.at, seq, attempt.id.to_string()],
            )?;
            c.execute(
                "UPDATE weeks SET status = 'pending', updated_at = ?1, journal_seq = ?2
                 WHERE id = ?3",
                params![c.at, seq, attempt.week_id.to_string()],
            )?;
            c.mark(Entity::Week, attempt.week_id, seq)
        })
    }

    /// Notes a runner's start and how many attempts it found open: those it
    /// recovers before planning anything new. Returns that count.
    pub fn record_runner_start(&self, command: &str) -> Result<i64> {
        self.change(|c| {
            let open: i64 = c.tx.query_row(
                "SELECT count(*) FROM attempts WHERE state IN ('intent', 'submitted')",
                [],
                |row| row.get(0),
            )?;
            chain::append(
                &c.tx,
                &c.at,
                "runner.started",
                "runner",
                &json!({"command": command, "pid": std::process::id(), "open_attempts": open}),
            )?;
            Ok(open)
        })
    }

    /// Notes the outcome of a sync attempt (not an event: syncing changes
    /// nothing the audit trail is about).
    pub fn record_sync(&self, error: Option<&str>) -> Result<()> {
        let at = timestamp(Utc::now());
        let connection = self.lock();
        let sql = if error.is_none() {
            "UPDATE sync_state SET last_attempt_at = ?1, last_success_at = ?1, last_error = ?2"
        } else {
            "UPDATE sync_state SET last_attempt_at = ?1, last_error = ?2"
        };
        connection
            .execute(sql, params![at, error])
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// Forgets the outbox entries of a batch Postgres has committed. A row
    /// changed again since has a newer entry of its own, which stays.
    pub fn acknowledge(&self, entries: &[OutboxEntry]) -> Result<()> {
        let ids = serde_json::Value::Array(entries.iter().map(|e| json!(e.id)).collect());
        let connection = self.lock();
        // Losing an acknowledgement in a crash only re-sends rows Postgres
        // already holds (harmless under the journal_seq guard), so it skips
        // the fsync; the next durable commit syncs the WAL past it anyway.
        connection
            .execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(|e| self.sqlite(e))?;
        let deleted = connection
            .prepare_cached("DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?1))")
            .and_then(|mut delete| delete.execute([ids.to_string()]));
        connection
            .execute_batch("PRAGMA synchronous = FULL")
            .map_err(|e| self.sqlite(e))?;
        deleted.map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// Sets a row Postgres refused aside with the error (I4): every outbox
    /// entry of the row leaves the queue so it cannot block the rows behind
    /// it, and the row is never dropped. `changes` are the entries of that
    /// one row the refused batch carried.
    pub fn quarantine(&self, changes: &[OutboxEntry], error: &str) -> Result<()> {
        let Some(newest) = changes.iter().max_by_key(|e| e.seq) else {
            return Ok(());
        };
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(|e| self.sqlite(e))?;
        tx.execute(
            "INSERT INTO quarantine (entity, entity_id, seq, error, quarantined_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                newest.entity,
                newest.entity_id,
                newest.seq,
                error,
                timestamp(Utc::now())
            ],
        )
        .and_then(|_| {
            // Its later entries too, or each batch would refuse it again.
            tx.execute(
                "DELETE FROM outbox WHERE entity = ?1 AND entity_id = ?2",
                params![newest.entity, newest.entity_id],
            )
        })
        .map_err(|e| self.sqlite(e))?;
        tx.commit().map_err(|e| self.sqlite(e))
    }

    /// Puts quarantined rows (one, or all with `None`) back in the outbox
    /// with their current state. Returns how many.
    pub fn requeue_quarantined(&self, id: Option<i64>) -> Result<usize> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(|e| self.sqlite(e))?;
        let at = timestamp(Utc::now());
        let requeued = tx
            .execute(
                "INSERT INTO outbox (entity, entity_id, seq, queued_at)
                 SELECT entity, entity_id, max(seq), ?1 FROM quarantine
                 WHERE ?2 IS NULL OR id = ?2
                 GROUP BY entity, entity_id",
                params![at, id],
            )
            .and_then(|_| {
                tx.execute(
                    "DELETE FROM quarantine WHERE ?1 IS NULL OR id = ?1",
                    params![id],
                )
            })
            .map_err(|e| self.sqlite(e))?;
        tx.commit().map_err(|e| self.sqlite(e))?;
        Ok(requeued)
    }

    /// Marks rows changed again at their current journal state, so the next
    /// drain rewrites them in Postgres (`verify --repair`).
    pub fn requeue(&self, rows: &[(&str, String)]) -> Result<()> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(|e| self.sqlite(e))?;
        let at = timestamp(Utc::now());
        for (entity, id) in rows {
            let table = match *entity {
                "collection" => "collections",
                "execution" => "attempts",
                "week" => "weeks",
                other => return Err(self.invalid(format!("unknown entity `{other}`"))),
            };
            tx.execute(
                &format!(
                    "INSERT INTO outbox (entity, entity_id, seq, queued_at)
                     SELECT ?1, id, journal_seq, ?3 FROM {table} WHERE id = ?2"
                ),
                params![entity, id, at],
            )
            .map_err(|e| self.sqlite(e))?;
        }
        tx.commit().map_err(|e| self.sqlite(e))
    }
}
