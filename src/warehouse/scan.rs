//! Postgres's side of `verify`, streamed: the tracked columns of one
//! journal's rows in id order, a page at a time, through server-side
//! cursors in one read-only snapshot; and what is counted or found wrong
//! in SQL rather than in memory (foreign keys pointing nowhere, the
//! execution_id population, the rows of other tools).
//!
//! Owns these reads. Pairing them with the journal's rows is
//! `sync::drift`'s.

use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use super::rows::{Entity, NULL, TrackedRow, tracked_columns};
use super::shape::{COLLECTIONS, EXECUTIONS, Table, WEEKS};
use super::upsert::classify;
use super::{Warehouse, WarehouseError};

/// An open read of one journal's rows; [`Scan::end`] closes it.
///
/// Every read runs in one `REPEATABLE READ, READ ONLY` transaction, so the
/// pages of the three tables, the counts and the foreign-key checks are one
/// snapshot, however long the walk takes and whatever syncs meanwhile.
pub struct Scan<'a> {
    warehouse: &'a Warehouse,
    collections: Vec<Uuid>,
    /// Rows per `FETCH`: what bounds memory on this side.
    page: usize,
}

/// A week whose foreign key names a row its table does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dangling {
    pub week: String,
    /// `execution_id` or `collection_id`.
    pub column: &'static str,
    pub value: String,
}

/// How many of one collection's weeks Postgres holds with their
/// execution: what the application's old verification script measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeekPopulation {
    pub collection: Uuid,
    pub weeks: usize,
    pub with_execution_id: usize,
    /// Completed weeks without their execution: lineage lost.
    pub completed_without_execution_id: usize,
}

fn cursor(entity: Entity) -> &'static str {
    match entity {
        Entity::Collection => "chronicle_verify_collections",
        Entity::Execution => "chronicle_verify_executions",
        Entity::Week => "chronicle_verify_weeks",
    }
}

/// A tracked column as text: timestamps as epoch milliseconds (the text
/// form of one depends on the session's time zone), a column the table
/// lacks as NULL.
fn select_text(table: &Table, column: &str) -> String {
    match table.get(column).map(|c| c.type_name.as_str()) {
        None => "NULL::text".to_owned(),
        Some("timestamptz" | "timestamp") => {
            format!("floor(extract(epoch FROM t.{column}) * 1000)::bigint::text")
        }
        Some(_) => format!("t.{column}::text"),
    }
}

fn count(value: i64) -> usize {
    usize::try_from(value).unwrap_or(0)
}

impl Warehouse {
    /// Opens the snapshot and one cursor per table over the rows of these
    /// collections: the collections, their weeks, and the executions their
    /// weeks name, each ordered by `id`.
    pub async fn scan(
        &self,
        collections: Vec<Uuid>,
        page: usize,
    ) -> Result<Scan<'_>, WarehouseError> {
        self.client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
                 SET LOCAL statement_timeout = {}",
                self.timeouts.statement.as_millis()
            ))
            .await
            .map_err(|e| classify(&e))?;
        let scan = Scan {
            warehouse: self,
            collections,
            page: page.max(1),
        };
        if let Err(e) = scan.declare().await {
            scan.end().await?;
            return Err(e);
        }
        Ok(scan)
    }
}

impl Scan<'_> {
    fn client(&self) -> &Client {
        &self.warehouse.client
    }

    fn select(&self, entity: Entity) -> String {
        let shape = &self.warehouse.shape;
        let (name, table) = match entity {
            Entity::Collection => (COLLECTIONS, &shape.collections),
            Entity::Execution => (EXECUTIONS, &shape.executions),
            Entity::Week => (WEEKS, &shape.weeks),
        };
        let selected: Vec<String> = tracked_columns(entity)
            .iter()
            .map(|c| select_text(table, c))
            .collect();
        format!("SELECT t.id::text, {} FROM {name} t", selected.join(", "))
    }

    async fn declare(&self) -> Result<(), WarehouseError> {
        let filters = [
            (Entity::Collection, "t.id = ANY($1)"),
            (Entity::Week, "t.collection_id = ANY($1)"),
            (
                Entity::Execution,
                "t.id IN (SELECT execution_id FROM report_data_weeks WHERE collection_id = ANY($1))",
            ),
        ];
        for (entity, filter) in filters {
            let sql = format!(
                "DECLARE {} NO SCROLL CURSOR FOR {} WHERE {filter} ORDER BY t.id",
                cursor(entity),
                self.select(entity)
            );
            self.run(&sql, &[(&self.collections, Type::UUID_ARRAY)])
                .await?;
        }
        Ok(())
    }

    async fn run(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<tokio_postgres::Row>, WarehouseError> {
        self.client()
            .query_typed(sql, params)
            .await
            .map_err(|e| classify(&e))
    }

    fn tracked(&self, entity: Entity, rows: Vec<tokio_postgres::Row>) -> Vec<TrackedRow> {
        let columns = tracked_columns(entity);
        rows.into_iter()
            .map(|row| TrackedRow {
                entity,
                id: row.get(0),
                columns: columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let value: Option<String> = row.get(i + 1);
                        (*c, value.unwrap_or_else(|| NULL.to_owned()))
                    })
                    .collect(),
            })
            .collect()
    }

    /// The next page of `entity`'s rows, in id order; fewer than a page
    /// means the last.
    pub async fn next_page(&self, entity: Entity) -> Result<Vec<TrackedRow>, WarehouseError> {
        let sql = format!("FETCH FORWARD {} FROM {}", self.page, cursor(entity));
        let rows = self.run(&sql, &[]).await?;
        Ok(self.tracked(entity, rows))
    }

    /// Executions by id, wherever they stand: the journal's executions no
    /// week of these collections names in Postgres.
    pub async fn executions(&self, ids: &[Uuid]) -> Result<Vec<TrackedRow>, WarehouseError> {
        let sql = format!(
            "{} WHERE t.id = ANY($1) ORDER BY t.id",
            self.select(Entity::Execution)
        );
        let rows = self.run(&sql, &[(&ids, Type::UUID_ARRAY)]).await?;
        Ok(self.tracked(Entity::Execution, rows))
    }

    /// Weeks of these collections whose `execution_id` or `collection_id`
    /// names a row that is not there.
    pub async fn dangling(&self) -> Result<Vec<Dangling>, WarehouseError> {
        let rows = self
            .run(
                "SELECT w.id::text, 'execution_id', w.execution_id::text
                 FROM report_data_weeks w
                 WHERE w.collection_id = ANY($1) AND w.execution_id IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM workflow_executions e WHERE e.id = w.execution_id)
                 UNION ALL
                 SELECT w.id::text, 'collection_id', w.collection_id::text
                 FROM report_data_weeks w
                 WHERE w.collection_id = ANY($1)
                   AND NOT EXISTS (SELECT 1 FROM report_data_collections c
                                   WHERE c.id = w.collection_id)
                 ORDER BY 1, 2",
                &[(&self.collections, Type::UUID_ARRAY)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| Dangling {
                week: row.get(0),
                column: if row.get::<_, &str>(1) == "collection_id" {
                    "collection_id"
                } else {
                    "execution_id"
                },
                value: row.get(2),
            })
            .collect())
    }

    /// Per collection, its weeks and how many carry their execution.
    pub async fn population(&self) -> Result<Vec<WeekPopulation>, WarehouseError> {
        let rows = self
            .run(
                "SELECT w.collection_id, count(*), count(w.execution_id),
                        count(*) FILTER (WHERE w.execution_id IS NULL
                                           AND w.status::text = 'completed')
                 FROM report_data_weeks w WHERE w.collection_id = ANY($1)
                 GROUP BY 1",
                &[(&self.collections, Type::UUID_ARRAY)],
            )
            .await?;
        // Typed by the catalog: an unexpected type is an error, never a panic.
        let population =
            |row: &tokio_postgres::Row| -> Result<WeekPopulation, tokio_postgres::Error> {
                Ok(WeekPopulation {
                    collection: row.try_get(0)?,
                    weeks: count(row.try_get(1)?),
                    with_execution_id: count(row.try_get(2)?),
                    completed_without_execution_id: count(row.try_get(3)?),
                })
            };
        rows.iter()
            .map(population)
            .collect::<Result<_, _>>()
            .map_err(|e| WarehouseError::Refused(format!("report_data_weeks.collection_id: {e}")))
    }

    /// Rows of the three tables, this journal's and every other's.
    pub async fn total_rows(&self) -> Result<usize, WarehouseError> {
        let rows = self
            .run(
                "SELECT (SELECT count(*) FROM report_data_collections)
                      + (SELECT count(*) FROM report_data_weeks)
                      + (SELECT count(*) FROM workflow_executions)",
                &[],
            )
            .await?;
        Ok(rows.first().map_or(0, |row| count(row.get(0))))
    }

    /// Ends the snapshot (its cursors with it), so the session can sync
    /// again: `verify --repair` drains on it next.
    pub async fn end(self) -> Result<(), WarehouseError> {
        self.client()
            .batch_execute("ROLLBACK")
            .await
            .map_err(|e| classify(&e))
    }
}
