//! What the connected database looks like: the columns and types of the
//! three tracking tables, read from the catalog at connect, and whether
//! they are the application's (uuid references to `workflows`,
//! `amc_instances` and `users`) or chronicle's own (AMC's ids as text).
//!
//! Owns reading the catalog and judging whether chronicle can write there
//! (a `SchemaError` names the table, column and what is wrong). Which
//! columns chronicle writes is `columns`'.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::{WarehouseError, error_text};

/// One column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// `pg_type.typname`: `uuid`, `text`, `varchar`, `int4`, `jsonb`, ...
    pub type_name: String,
    pub not_null: bool,
    /// A default, identity or generated value fills it when not written.
    pub filled_by_default: bool,
}

/// One table's columns, by name.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: BTreeMap<String, Column>,
}

impl Table {
    pub fn get(&self, column: &str) -> Option<&Column> {
        self.columns.get(column)
    }

    pub fn has(&self, column: &str) -> bool {
        self.columns.contains_key(column)
    }

    /// True when `column` exists and holds uuids: a reference to the
    /// application's own rows rather than AMC's text id.
    pub fn is_uuid(&self, column: &str) -> bool {
        self.get(column).is_some_and(|c| c.type_name == "uuid")
    }
}

/// The tables chronicle writes, and the application's tables they point at
/// (empty when absent).
#[derive(Debug, Clone, Default)]
pub struct Shape {
    pub collections: Table,
    pub executions: Table,
    pub weeks: Table,
    pub workflows: Table,
    pub instances: Table,
    /// `workflow_executions` has an AFTER UPDATE trigger of the
    /// application's (its warehouse export queues completed executions
    /// there), which an execution chronicle inserts already completed would
    /// never meet.
    pub execution_update_triggers: bool,
}

/// A database chronicle cannot write to as it is: told before anything is
/// submitted to AMC, never found out by rows piling up in quarantine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "column {table}.{column} is of type {found}; chronicle writes {wants} there and never retypes a column of yours"
    )]
    ColumnType {
        table: &'static str,
        column: String,
        found: String,
        wants: String,
    },
    #[error(
        "column {table}.{column} is NOT NULL without a default and chronicle has no value for it"
    )]
    UnfilledColumn { table: &'static str, column: String },
    #[error(
        "{table}.{column} references {target}, which this database does not have with the columns chronicle reads ({needs})"
    )]
    MissingTable {
        table: &'static str,
        column: &'static str,
        target: &'static str,
        needs: &'static str,
    },
    #[error(
        "no row of {table} has {column} = '{value}' (the schedule's {key}); add it in the application (or fix the schedule file) before collecting"
    )]
    MissingReference {
        table: &'static str,
        column: &'static str,
        value: String,
        key: &'static str,
    },
    #[error(
        "{count} rows of {table} have {column} = '{value}'; chronicle cannot tell which one the schedule means"
    )]
    AmbiguousReference {
        table: &'static str,
        column: &'static str,
        value: String,
        count: i64,
    },
    #[error("{0}")]
    Collection(String),
}

pub const COLLECTIONS: &str = "report_data_collections";
pub const EXECUTIONS: &str = "workflow_executions";
pub const WEEKS: &str = "report_data_weeks";
pub const WORKFLOWS: &str = "workflows";
pub const INSTANCES: &str = "amc_instances";

/// Reads the columns of the five tables (as the search path finds them).
pub async fn read(client: &Client) -> Result<Shape, WarehouseError> {
    let rows = client
        .query_typed(
            "SELECT c.relname::text, a.attname::text, t.typname::text, a.attnotnull,
                    a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_type t ON t.oid = a.atttypid
             WHERE c.oid IN (to_regclass('report_data_collections'),
                             to_regclass('workflow_executions'),
                             to_regclass('report_data_weeks'),
                             to_regclass('workflows'),
                             to_regclass('amc_instances'))
               AND a.attnum > 0 AND NOT a.attisdropped",
            &[],
        )
        .await
        .map_err(|e| WarehouseError::Refused(error_text(&e)))?;
    let mut shape = Shape {
        execution_update_triggers: client
            .query_typed(
                // tgtype: bit 1 (2) BEFORE, bit 4 (16) UPDATE.
                "SELECT EXISTS (SELECT 1 FROM pg_trigger
                                WHERE tgrelid = to_regclass('workflow_executions')
                                  AND NOT tgisinternal AND tgtype & 16 <> 0 AND tgtype & 2 = 0)",
                &[],
            )
            .await
            .map_err(|e| WarehouseError::Refused(error_text(&e)))?[0]
            .get(0),
        ..Shape::default()
    };
    for row in rows {
        let table: String = row.get(0);
        let slot = match table.as_str() {
            COLLECTIONS => &mut shape.collections,
            EXECUTIONS => &mut shape.executions,
            WEEKS => &mut shape.weeks,
            WORKFLOWS => &mut shape.workflows,
            INSTANCES => &mut shape.instances,
            _ => continue,
        };
        slot.columns.insert(
            row.get(1),
            Column {
                type_name: row.get(2),
                not_null: row.get(3),
                filled_by_default: row.get(4),
            },
        );
    }
    Ok(shape)
}

impl Shape {
    /// Whether the reference columns point at the application's own rows.
    pub fn references_application(&self) -> bool {
        self.collections.is_uuid("workflow_id")
            || self.collections.is_uuid("instance_id")
            || self.executions.is_uuid("workflow_id")
    }

    /// The application's tables that uuid references need, with the
    /// columns chronicle resolves them by.
    pub fn check_references(&self) -> Result<(), SchemaError> {
        let needs_workflows = self.collections.is_uuid("workflow_id")
            || self.executions.is_uuid("workflow_id")
            || self.collections.has("user_id");
        let workflows_ok = ["id", "workflow_id", "amc_workflow_id", "user_id"]
            .iter()
            .all(|c| self.workflows.has(c));
        if needs_workflows && !workflows_ok {
            return Err(SchemaError::MissingTable {
                table: COLLECTIONS,
                column: "workflow_id",
                target: WORKFLOWS,
                needs: "id, workflow_id, amc_workflow_id, user_id",
            });
        }
        let needs_instances = self.collections.is_uuid("instance_id")
            || self.executions.is_uuid("target_instance_id");
        let instances_ok = ["id", "instance_id"].iter().all(|c| self.instances.has(c));
        if needs_instances && !instances_ok {
            return Err(SchemaError::MissingTable {
                table: COLLECTIONS,
                column: "instance_id",
                target: INSTANCES,
                needs: "id, instance_id",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(columns: &[(&str, &str)]) -> Table {
        Table {
            columns: columns
                .iter()
                .map(|(name, ty)| {
                    (
                        name.to_string(),
                        Column {
                            type_name: ty.to_string(),
                            not_null: false,
                            filled_by_default: false,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn uuid_references_without_the_applications_tables_are_refused_naming_them() {
        let shape = Shape {
            collections: table(&[("workflow_id", "uuid")]),
            ..Shape::default()
        };
        assert!(shape.references_application());
        let error = shape.check_references().unwrap_err().to_string();
        assert!(
            error.contains("report_data_collections.workflow_id") && error.contains("workflows"),
            "{error}"
        );
        let own = Shape {
            collections: table(&[("workflow_id", "text")]),
            ..Shape::default()
        };
        assert!(!own.references_application());
        assert_eq!(own.check_references(), Ok(()));
    }
}
