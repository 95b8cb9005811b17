//! Which columns chronicle writes, and how, decided once per connection
//! from the database's shape: every column chronicle knows that the table
//! has is written, in the type the catalog says (a reference column holds
//! the application's uuid where it is a uuid, AMC's id where it is text),
//! as one array per column for a set-based `unnest` upsert.
//!
//! Owns the column catalogue, the type checks behind `preflight`, and the
//! upsert statements. The values' meaning is `rows`'; sending is `upsert`'s.

use serde_json::json;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use super::refs::Refs;
use super::rows::{CollectionRow, ExecutionRow, WeekRow};
use super::shape::{COLLECTIONS, EXECUTIONS, SchemaError, Shape, Table, WEEKS};

const UUID: &[&str] = &["uuid"];
const TEXT: &[&str] = &["text", "varchar", "bpchar"];
const INT: &[&str] = &["int4", "int8", "int2", "numeric"];
const BIGINT: &[&str] = &["int8", "numeric"];
const DATE: &[&str] = &["date"];
const TIME: &[&str] = &["timestamptz", "timestamp"];
const JSON: &[&str] = &["jsonb", "json"];
/// A reference: the application's uuid, or AMC's id in chronicle's tables.
const REFERENCE: &[&str] = &["uuid", "text", "varchar"];

/// One column chronicle knows.
struct Spec {
    name: &'static str,
    /// Catalog types it can be written as.
    accepts: &'static [&'static str],
    /// Rewritten when the row is written again; false: set once, when
    /// chronicle inserts the row (identity, a readable id, creation time),
    /// so a row the application made keeps them.
    update: bool,
}

const fn spec(name: &'static str, accepts: &'static [&'static str], update: bool) -> Spec {
    Spec {
        name,
        accepts,
        update,
    }
}

const COLLECTION_SPECS: &[Spec] = &[
    spec("id", UUID, false),
    spec("collection_id", TEXT, false),
    // Tables an older chronicle made name the collection here.
    spec("name", TEXT, true),
    spec("workflow_id", REFERENCE, true),
    spec("instance_id", REFERENCE, true),
    spec("user_id", UUID, true),
    spec("collection_type", TEXT, false),
    spec("target_weeks", INT, true),
    spec("start_date", DATE, true),
    spec("end_date", DATE, true),
    spec("status", TEXT, true),
    spec("progress_percentage", INT, true),
    spec("weeks_completed", INT, true),
    spec("configuration", JSON, false),
    spec("created_at", TIME, false),
    spec("updated_at", TIME, true),
    spec("journal_seq", BIGINT, true),
];

const EXECUTION_SPECS: &[Spec] = &[
    spec("id", UUID, false),
    spec("execution_id", TEXT, false),
    spec("workflow_id", REFERENCE, true),
    spec("status", TEXT, true),
    spec("progress", INT, true),
    spec("execution_parameters", JSON, true),
    spec("row_count", INT, true),
    spec("error_message", TEXT, true),
    spec("started_at", TIME, true),
    spec("completed_at", TIME, true),
    spec("duration_seconds", INT, true),
    spec("triggered_by", TEXT, false),
    spec("created_at", TIME, false),
    spec("updated_at", TIME, true),
    spec("result_columns", JSON, true),
    spec("result_rows", JSON, true),
    spec("result_total_rows", INT, true),
    spec("result_sample_size", INT, true),
    // AMC's instance id as text in the application too.
    spec("instance_id", REFERENCE, true),
    spec("amc_execution_id", TEXT, true),
    spec("execution_mode", TEXT, false),
    spec("amc_workflow_id", TEXT, true),
    spec("target_instance_id", UUID, true),
    spec("journal_seq", BIGINT, true),
];

const WEEK_SPECS: &[Spec] = &[
    spec("id", UUID, false),
    spec("collection_id", UUID, false),
    spec("week_start_date", DATE, false),
    spec("week_end_date", DATE, true),
    spec("status", TEXT, true),
    spec("execution_id", UUID, true),
    // The application's older name for execution_id; its trigger copies
    // one to the other only when one is NULL, so a retried week would keep
    // pointing at its first execution unless both are written.
    spec("workflow_execution_id", UUID, true),
    spec("amc_execution_id", TEXT, true),
    spec("started_at", TIME, true),
    spec("completed_at", TIME, true),
    spec("execution_date", TIME, true),
    spec("execution_time_seconds", INT, true),
    spec("record_count", INT, true),
    spec("data_checksum", TEXT, true),
    spec("error_message", TEXT, true),
    spec("summary_stats", JSON, true),
    spec("created_at", TIME, false),
    spec("updated_at", TIME, true),
    spec("journal_seq", BIGINT, true),
];

/// One table's upsert for this database: the columns it has that chronicle
/// writes, in order, and the statement.
#[derive(Debug, Clone)]
pub struct Upsert {
    pub table: &'static str,
    pub columns: Vec<Written>,
    /// Those rewritten on a row Postgres already holds.
    pub rewritten: Vec<&'static str>,
    pub sql: String,
}

/// One written column and the catalog type it has.
#[derive(Debug, Clone)]
pub struct Written {
    pub name: &'static str,
    pub type_name: String,
}

/// The three upserts of a database, parents first.
#[derive(Debug, Clone)]
pub struct Upserts {
    pub collections: Upsert,
    pub executions: Upsert,
    pub weeks: Upsert,
}

impl Upserts {
    /// Plans the upserts for `shape`, or says why chronicle cannot write
    /// there: a column of a type it does not write, or a NOT NULL column
    /// without a default it has no value for.
    pub fn plan(shape: &Shape) -> Result<Upserts, SchemaError> {
        shape.check_references()?;
        Ok(Upserts {
            collections: plan(COLLECTIONS, &shape.collections, COLLECTION_SPECS)?,
            executions: plan(EXECUTIONS, &shape.executions, EXECUTION_SPECS)?,
            weeks: plan(WEEKS, &shape.weeks, WEEK_SPECS)?,
        })
    }
}

fn plan(name: &'static str, table: &Table, specs: &[Spec]) -> Result<Upsert, SchemaError> {
    let mut columns = Vec::new();
    for spec in specs {
        let Some(column) = table.get(spec.name) else {
            continue;
        };
        if !spec.accepts.contains(&column.type_name.as_str()) {
            return Err(SchemaError::ColumnType {
                table: name,
                column: spec.name.to_owned(),
                found: column.type_name.clone(),
                wants: spec.accepts.join(" or "),
            });
        }
        columns.push(Written {
            name: spec.name,
            type_name: column.type_name.clone(),
        });
    }
    for (column, info) in &table.columns {
        let written = columns.iter().any(|w| w.name == column);
        if info.not_null && !info.filled_by_default && !written {
            return Err(SchemaError::UnfilledColumn {
                table: name,
                column: column.clone(),
            });
        }
    }
    for required in ["id", "journal_seq"] {
        if !columns.iter().any(|w| w.name == required) {
            return Err(SchemaError::UnfilledColumn {
                table: name,
                column: required.to_owned(),
            });
        }
    }
    let names: Vec<&str> = columns.iter().map(|w| w.name).collect();
    // One `unnest` per column in the select list (a ProjectSet, which
    // walks the arrays in step, as `unnest(a, b, ...)` in FROM does, and
    // pads a shorter one with NULLs the same way), not one multi-argument
    // `unnest` in FROM: that is a function scan putting each array into a
    // tuplestore of its own before pairing them, about five times the
    // cost for 23 arrays of 2,500 (BENCHMARKS.md, reconciler).
    let unnests: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, w)| format!("unnest(${}::{})", i + 1, array_cast(w)))
        .collect();
    let rewritten: Vec<&'static str> = specs
        .iter()
        .filter(|s| s.update && names.contains(&s.name))
        .map(|s| s.name)
        .collect();
    let updates: Vec<String> = rewritten
        .iter()
        .map(|name| format!("{name} = EXCLUDED.{name}"))
        .collect();
    let sql = format!(
        "INSERT INTO {name} AS t ({}) SELECT {}
         ON CONFLICT (id) DO UPDATE SET {}
         WHERE t.journal_seq IS NULL OR t.journal_seq <= EXCLUDED.journal_seq",
        names.join(", "),
        unnests.join(", "),
        updates.join(", ")
    );
    Ok(Upsert {
        table: name,
        columns,
        rewritten,
        sql,
    })
}

/// The parameter array's type, as the SQL casts it.
fn array_cast(written: &Written) -> &'static str {
    param_type(written).1
}

fn param_type(written: &Written) -> (Type, &'static str) {
    match written.name {
        "journal_seq" => (Type::INT8_ARRAY, "int8[]"),
        _ => match written.type_name.as_str() {
            "uuid" => (Type::UUID_ARRAY, "uuid[]"),
            "text" | "varchar" | "bpchar" => (Type::TEXT_ARRAY, "text[]"),
            "int2" | "int4" | "int8" | "numeric" => (Type::INT4_ARRAY, "int4[]"),
            "date" => (Type::DATE_ARRAY, "date[]"),
            "timestamptz" | "timestamp" => (Type::TIMESTAMPTZ_ARRAY, "timestamptz[]"),
            _ => (Type::JSONB_ARRAY, "jsonb[]"),
        },
    }
}

/// One column's values for a batch, with the type they are sent as.
pub type Param = (Box<dyn ToSql + Sync + Send>, Type);

/// A reference column's value: the application's uuid where the column is
/// a uuid, AMC's id where it is text.
fn reference<R>(
    written: &Written,
    rows: &[R],
    amc_id: impl Fn(&R) -> &str,
    uuid: impl Fn(&str) -> Option<Uuid>,
) -> Box<dyn ToSql + Sync + Send> {
    if written.type_name == "uuid" {
        Box::new(rows.iter().map(|r| uuid(amc_id(r))).collect::<Vec<_>>())
    } else {
        Box::new(
            rows.iter()
                .map(|r| amc_id(r).to_owned())
                .collect::<Vec<_>>(),
        )
    }
}

/// A catalogue column without a value: a bug the unit test
/// `every_catalogued_column_has_a_value` catches before any release.
fn unknown(column: &str) -> ! {
    unreachable!("column {column} is in the catalogue but has no value")
}

macro_rules! column {
    ($rows:expr, |$r:ident| $value:expr) => {
        Box::new($rows.iter().map(|$r| $value).collect::<Vec<_>>()) as Box<dyn ToSql + Sync + Send>
    };
}

impl Upsert {
    pub fn collection_params(&self, rows: &[CollectionRow], refs: &Refs) -> Vec<Param> {
        let workflow_uuid = |w: &str| refs.workflow(w).map(|w| w.id);
        self.params(|written| match written.name {
            "id" => column!(rows, |r| r.id),
            "collection_id" => column!(rows, |r| r.readable_id.clone()),
            "name" => column!(rows, |r| r.name.clone()),
            "workflow_id" => reference(written, rows, |r| &r.workflow_id, workflow_uuid),
            "instance_id" => reference(written, rows, |r| &r.instance_id, |i| refs.instance(i)),
            "user_id" => column!(rows, |r| refs
                .workflow(&r.workflow_id)
                .and_then(|w| w.user_id)),
            "collection_type" => column!(rows, |_r| "backfill"),
            "target_weeks" => column!(rows, |r| r.weeks.total() as i32),
            "start_date" => column!(rows, |r| r.start_date),
            "end_date" => column!(rows, |r| r.end_date),
            "status" => column!(rows, |r| r.status.as_str()),
            "progress_percentage" => column!(rows, |r| r.weeks.progress_percentage()),
            "weeks_completed" => column!(rows, |r| r.weeks.completed as i32),
            "configuration" => column!(rows, |r| json!({
                "schedule": r.name,
                "workflow_name": refs.workflow(&r.workflow_id).and_then(|w| w.name.clone()),
                "instance_id_amc": r.instance_id,
                "managed_by": "chronicle",
            })),
            "created_at" => column!(rows, |r| r.created_at),
            "updated_at" => column!(rows, |r| r.updated_at),
            "journal_seq" => column!(rows, |r| r.journal_seq),
            other => unknown(other),
        })
    }

    pub fn execution_params(&self, rows: &[ExecutionRow], refs: &Refs) -> Vec<Param> {
        let workflow_uuid = |w: &str| refs.workflow(w).map(|w| w.id);
        self.params(|written| match written.name {
            "id" => column!(rows, |r| r.id),
            "execution_id" => column!(rows, |r| r.readable_id.clone()),
            "workflow_id" => reference(written, rows, |r| &r.workflow_id, workflow_uuid),
            "status" => column!(rows, |r| r.status.as_str()),
            "progress" => column!(rows, |r| r.status.progress()),
            "execution_parameters" => column!(rows, |r| r.execution_parameters.clone()),
            "row_count" => column!(rows, |r| r.row_count),
            "error_message" => column!(rows, |r| r.error_message.clone()),
            "started_at" => column!(rows, |r| r.started_at),
            "completed_at" => column!(rows, |r| r.completed_at),
            "duration_seconds" => column!(rows, |r| r.duration_seconds()),
            "triggered_by" => column!(rows, |_r| "collection"),
            "created_at" => column!(rows, |r| r.created_at),
            "updated_at" => column!(rows, |r| r.updated_at),
            "result_columns" => column!(rows, |r| r.result.columns.clone()),
            "result_rows" => column!(rows, |r| r.result.rows.clone()),
            "result_total_rows" => {
                column!(rows, |r| r.result.total_rows.or(r.row_count).unwrap_or(0))
            }
            "result_sample_size" => column!(rows, |r| r.result.sample_size.unwrap_or(0)),
            "instance_id" => reference(written, rows, |r| &r.instance_id, |i| refs.instance(i)),
            "amc_execution_id" => column!(rows, |r| r.amc_execution_id.clone()),
            "execution_mode" => column!(rows, |_r| "saved_workflow"),
            "amc_workflow_id" => column!(rows, |r| r.workflow_id.clone()),
            "target_instance_id" => column!(rows, |r| refs.instance(&r.instance_id)),
            "journal_seq" => column!(rows, |r| r.journal_seq),
            other => unknown(other),
        })
    }

    pub fn week_params(&self, rows: &[WeekRow]) -> Vec<Param> {
        self.params(|written| match written.name {
            "id" => column!(rows, |r| r.id),
            "collection_id" => column!(rows, |r| r.collection_id),
            "week_start_date" => column!(rows, |r| r.week_start_date),
            "week_end_date" => column!(rows, |r| r.week_end_date),
            "status" => column!(rows, |r| r.status.clone()),
            "execution_id" | "workflow_execution_id" => column!(rows, |r| r.execution_id),
            "amc_execution_id" => column!(rows, |r| r.amc_execution_id.clone()),
            "started_at" | "execution_date" => column!(rows, |r| r.started_at),
            "completed_at" => column!(rows, |r| r.completed_at),
            "execution_time_seconds" => column!(rows, |r| r.execution_time_seconds()),
            "record_count" => column!(rows, |r| r.record_count),
            "data_checksum" => column!(rows, |r| r.data_checksum.clone()),
            "error_message" => column!(rows, |r| r.error_message.clone()),
            "summary_stats" => column!(rows, |r| r.summary_stats.clone()),
            "created_at" => column!(rows, |r| r.created_at),
            "updated_at" => column!(rows, |r| r.updated_at),
            "journal_seq" => column!(rows, |r| r.journal_seq),
            other => unknown(other),
        })
    }

    fn params(
        &self,
        mut value: impl FnMut(&Written) -> Box<dyn ToSql + Sync + Send>,
    ) -> Vec<Param> {
        self.columns
            .iter()
            .map(|written| (value(written), param_type(written).0))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warehouse::shape::Column;

    fn table(columns: &[(&str, &str, bool)]) -> Table {
        Table {
            columns: columns
                .iter()
                .map(|(name, ty, not_null)| {
                    (
                        name.to_string(),
                        Column {
                            type_name: ty.to_string(),
                            not_null: *not_null,
                            filled_by_default: false,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn only_the_columns_a_table_has_are_written_and_identity_is_set_once() {
        let weeks = table(&[
            ("id", "uuid", true),
            ("collection_id", "uuid", false),
            ("week_start_date", "date", true),
            ("status", "varchar", false),
            ("journal_seq", "int8", false),
            ("notes", "text", false),
        ]);
        let upsert = plan(WEEKS, &weeks, WEEK_SPECS).unwrap();
        let names: Vec<_> = upsert.columns.iter().map(|w| w.name).collect();
        assert_eq!(
            names,
            [
                "id",
                "collection_id",
                "week_start_date",
                "status",
                "journal_seq"
            ]
        );
        assert!(
            upsert.sql.contains("status = EXCLUDED.status"),
            "{}",
            upsert.sql
        );
        assert!(
            !upsert.sql.contains("collection_id = EXCLUDED"),
            "{}",
            upsert.sql
        );
    }

    #[test]
    fn the_rows_come_from_one_unnest_per_column_in_the_select_list() {
        let weeks = table(&[
            ("id", "uuid", true),
            ("status", "varchar", false),
            ("journal_seq", "int8", false),
        ]);
        let upsert = plan(WEEKS, &weeks, WEEK_SPECS).unwrap();
        assert!(
            upsert
                .sql
                .contains("SELECT unnest($1::uuid[]), unnest($2::text[]), unnest($3::int8[])\n"),
            "{}",
            upsert.sql
        );
        assert!(!upsert.sql.contains("FROM unnest"), "{}", upsert.sql);
    }

    fn full(specs: &[Spec]) -> Table {
        table(
            &specs
                .iter()
                .map(|s| (s.name, s.accepts[0], false))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn every_catalogued_column_has_a_value() {
        let refs = Refs::default();
        let collections = plan(COLLECTIONS, &full(COLLECTION_SPECS), COLLECTION_SPECS).unwrap();
        assert_eq!(
            collections.collection_params(&[], &refs).len(),
            COLLECTION_SPECS.len()
        );
        let executions = plan(EXECUTIONS, &full(EXECUTION_SPECS), EXECUTION_SPECS).unwrap();
        assert_eq!(
            executions.execution_params(&[], &refs).len(),
            EXECUTION_SPECS.len()
        );
        let weeks = plan(WEEKS, &full(WEEK_SPECS), WEEK_SPECS).unwrap();
        assert_eq!(weeks.week_params(&[]).len(), WEEK_SPECS.len());
    }

    #[test]
    fn a_column_of_another_type_or_an_unfilled_not_null_one_is_named() {
        let retyped = table(&[
            ("id", "uuid", true),
            ("record_count", "text", false),
            ("journal_seq", "int8", false),
        ]);
        let error = plan(WEEKS, &retyped, WEEK_SPECS).unwrap_err().to_string();
        assert!(error.contains("report_data_weeks.record_count"), "{error}");
        assert!(error.contains("text"), "{error}");
        let unfilled = table(&[
            ("id", "uuid", true),
            ("owner_note", "text", true),
            ("journal_seq", "int8", false),
        ]);
        let error = plan(WEEKS, &unfilled, WEEK_SPECS).unwrap_err().to_string();
        assert!(error.contains("report_data_weeks.owner_note"), "{error}");
    }
}
