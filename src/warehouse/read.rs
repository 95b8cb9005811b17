//! Reading Postgres's side: the chain heads the audit checks, and the
//! application's collection a new schedule attaches to, with its weeks and
//! their executions, for the journal to import.
//!
//! Owns these reads; judging them is the audit's, and importing is the
//! journal's. `verify`'s walk of both sides is `scan`'s.

use chrono::{DateTime, NaiveDate, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::shape::SchemaError;
use super::upsert::classify;
use super::{Warehouse, WarehouseError};

/// Which application collection a schedule means.
#[derive(Debug, Clone)]
pub struct CollectionQuery<'a> {
    /// The schedule's name: a collection chronicle made for it (id
    /// `collection_id(name)`, or `configuration.schedule`) is its own.
    pub schedule: &'a str,
    /// UUIDv5 of the schedule's name: the id chronicle would give it.
    pub own_id: Uuid,
    /// AMC's saved workflow and instance ids.
    pub workflow_id: &'a str,
    pub instance_id: &'a str,
    /// `collection_id = "coll_..."` in the schedule file.
    pub named: Option<&'a str>,
    /// Collections this journal already holds: never attached twice.
    pub taken: &'a [Uuid],
}

/// An application collection a schedule attaches to.
#[derive(Debug, Clone, PartialEq)]
pub struct AppCollection {
    pub id: Uuid,
    /// Its `collection_id` (`coll_...`).
    pub readable_id: String,
    pub start_date: NaiveDate,
    pub weeks: Vec<AppWeek>,
}

/// One of its weeks, as the application left it.
#[derive(Debug, Clone, PartialEq)]
pub struct AppWeek {
    pub id: Uuid,
    pub week_start: NaiveDate,
    pub status: String,
    pub record_count: Option<i32>,
    pub data_checksum: Option<String>,
    pub error_message: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub amc_execution_id: Option<String>,
    /// The `workflow_executions` row its `execution_id` names.
    pub execution: Option<AppExecution>,
}

/// The execution row of an application week.
#[derive(Debug, Clone, PartialEq)]
pub struct AppExecution {
    pub id: Uuid,
    /// Its `execution_id` (`exec_...`).
    pub readable_id: String,
    pub amc_execution_id: Option<String>,
    pub status: String,
    pub row_count: Option<i32>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Warehouse {
    /// Every chain head recorded for `journal_id`, oldest first, as
    /// `(seq, hash)`, and whether heads of other journals exist.
    pub async fn chain_heads(
        &self,
        journal_id: &str,
    ) -> Result<(Vec<(i64, String)>, bool), WarehouseError> {
        let heads = self
            .client
            .query_typed(
                "SELECT seq, hash FROM chronicle.chain_heads WHERE journal_id = $1 ORDER BY seq",
                &[(&journal_id, Type::TEXT)],
            )
            .await
            .map_err(|e| classify(&e))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let others: bool = self
            .client
            .query_typed(
                "SELECT EXISTS (SELECT 1 FROM chronicle.chain_heads WHERE journal_id <> $1)",
                &[(&journal_id, Type::TEXT)],
            )
            .await
            .map_err(|e| classify(&e))?[0]
            .get(0);
        Ok((heads, others))
    }

    /// The collection Postgres already holds for a schedule, if any, with
    /// its weeks: the one the schedule names (`collection_id`), the one
    /// chronicle made for it before, or the one collection of the same
    /// workflow and instance that no other schedule claims. Several such
    /// collections are an error naming them: the schedule must name one.
    pub async fn find_collection(
        &mut self,
        query: &CollectionQuery<'_>,
    ) -> Result<Option<AppCollection>, WarehouseError> {
        self.resolve(&[(query.workflow_id, query.instance_id)])
            .await?;
        let reference = |column: &str, amc_id: &str| -> Option<String> {
            if self.shape.collections.is_uuid(column) {
                match column {
                    "workflow_id" => self.refs.workflow(amc_id).map(|w| w.id.to_string()),
                    _ => self.refs.instance(amc_id).map(|i| i.to_string()),
                }
            } else {
                Some(amc_id.to_owned())
            }
        };
        let workflow = reference("workflow_id", query.workflow_id);
        let instance = reference("instance_id", query.instance_id);
        let own_schedule = if self.shape.collections.has("configuration") {
            "coalesce(configuration->>'schedule', $5) = $5"
        } else {
            "true"
        };
        let sql = format!(
            "SELECT id, collection_id::text, start_date::date,
                    (id = $1) AS own, coalesce(collection_id = $4, false) AS named
             FROM report_data_collections
             WHERE collection_id = $4 OR id = $1
                OR ($4 IS NULL AND workflow_id::text = $2 AND instance_id::text = $3
                    AND NOT (id = ANY($6)) AND {own_schedule})
             ORDER BY own DESC, named DESC NULLS LAST, id"
        );
        let taken = query.taken.to_vec();
        let rows = self
            .client
            .query_typed(
                &sql,
                &[
                    (&query.own_id, Type::UUID),
                    (&workflow, Type::TEXT),
                    (&instance, Type::TEXT),
                    (&query.named, Type::TEXT),
                    (&query.schedule, Type::TEXT),
                    (&taken, Type::UUID_ARRAY),
                ],
            )
            .await
            .map_err(|e| classify(&e))?;
        let chosen = match (query.named, rows.as_slice()) {
            (Some(named), rows) => match rows.iter().find(|r| r.get::<_, bool>(4)) {
                Some(row) => row,
                None => {
                    return Err(SchemaError::Collection(format!(
                        "no row of report_data_collections has collection_id = '{named}' (the schedule's collection_id)"
                    ))
                    .into());
                }
            },
            (None, []) => return Ok(None),
            (None, [first, ..]) if first.get::<_, bool>(3) => first,
            (None, [only]) => only,
            (None, several) => {
                let ids: Vec<String> = several.iter().map(|r| r.get(1)).collect();
                return Err(SchemaError::Collection(format!(
                    "report_data_collections holds {} collections of workflow {} on instance {} ({}); set `collection_id` in the schedule file to the one this schedule continues",
                    ids.len(),
                    query.workflow_id,
                    query.instance_id,
                    ids.join(", ")
                ))
                .into());
            }
        };
        let id: Uuid = chosen.get(0);
        let weeks = self
            .client
            .query_typed(
                "SELECT w.id, w.week_start_date::date, coalesce(w.status::text, 'pending'),
                        w.record_count::int4, w.data_checksum::text, w.error_message::text,
                        w.started_at::timestamptz, w.completed_at::timestamptz,
                        w.amc_execution_id::text,
                        e.id, e.execution_id::text, e.amc_execution_id::text, e.status::text,
                        e.row_count::int4, e.started_at::timestamptz, e.completed_at::timestamptz
                 FROM report_data_weeks w
                 LEFT JOIN workflow_executions e ON e.id = w.execution_id
                 WHERE w.collection_id = $1
                 ORDER BY w.week_start_date",
                &[(&id, Type::UUID)],
            )
            .await
            .map_err(|e| classify(&e))?
            .iter()
            .map(app_week)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| WarehouseError::Refused(format!("report_data_weeks: {e}")))?;
        Ok(Some(AppCollection {
            id,
            readable_id: chosen.get(1),
            start_date: chosen.get(2),
            weeks,
        }))
    }
}

/// Typed by the SELECT's casts; an unexpected value is an error, never a
/// panic.
fn app_week(row: &Row) -> Result<AppWeek, tokio_postgres::Error> {
    let execution_id: Option<Uuid> = row.try_get(9)?;
    Ok(AppWeek {
        id: row.try_get(0)?,
        week_start: row.try_get(1)?,
        status: row.try_get(2)?,
        record_count: row.try_get(3)?,
        data_checksum: row.try_get(4)?,
        error_message: row.try_get(5)?,
        started_at: row.try_get(6)?,
        completed_at: row.try_get(7)?,
        amc_execution_id: row.try_get(8)?,
        execution: match execution_id {
            None => None,
            Some(id) => Some(AppExecution {
                id,
                readable_id: row.try_get(10)?,
                amc_execution_id: row.try_get(11)?,
                status: row.try_get(12)?,
                row_count: row.try_get(13)?,
                started_at: row.try_get(14)?,
                completed_at: row.try_get(15)?,
            }),
        },
    })
}
