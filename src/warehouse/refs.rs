//! The application's own ids for what a schedule names: `workflows(id)`
//! (and its `user_id` and `name`) for AMC's saved workflow id, looked up by
//! `amc_workflow_id` first and `workflow_id` second, and `amc_instances(id)`
//! for AMC's instance id. Resolved set-based, one statement for every id a
//! batch needs that is not known yet, and kept for the connection's life.
//!
//! Owns the lookups and their cache; an id with no row is a `SchemaError`
//! naming the table, column and value.

use std::collections::{BTreeSet, HashMap};

use tokio_postgres::Client;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::shape::{INSTANCES, SchemaError, WORKFLOWS};
use super::{WarehouseError, error_text};

/// The application's row of one saved workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    pub id: Uuid,
    /// Who owns it: the collection's `user_id`, and the one the
    /// application's warehouse export queues executions for.
    pub user_id: Option<Uuid>,
    /// Shown in the application's collection list (`configuration`).
    pub name: Option<String>,
}

/// AMC ids resolved so far.
#[derive(Debug, Default)]
pub struct Refs {
    workflows: HashMap<String, Workflow>,
    instances: HashMap<String, Uuid>,
}

impl Refs {
    pub fn workflow(&self, amc_workflow_id: &str) -> Option<&Workflow> {
        self.workflows.get(amc_workflow_id)
    }

    pub fn instance(&self, amc_instance_id: &str) -> Option<Uuid> {
        self.instances.get(amc_instance_id).copied()
    }

    /// Looks up every id of `workflows` and `instances` not known yet, in
    /// one statement each; an id without its row is an error naming it.
    pub async fn resolve(
        &mut self,
        client: &Client,
        workflows: &[&str],
        instances: &[&str],
    ) -> Result<(), WarehouseError> {
        let missing: BTreeSet<&str> = workflows
            .iter()
            .copied()
            .filter(|w| !self.workflows.contains_key(*w))
            .collect();
        if !missing.is_empty() {
            self.resolve_workflows(client, &missing).await?;
        }
        let missing: BTreeSet<&str> = instances
            .iter()
            .copied()
            .filter(|i| !self.instances.contains_key(*i))
            .collect();
        if !missing.is_empty() {
            self.resolve_instances(client, &missing).await?;
        }
        Ok(())
    }

    async fn resolve_workflows(
        &mut self,
        client: &Client,
        ids: &BTreeSet<&str>,
    ) -> Result<(), WarehouseError> {
        let wanted: Vec<&str> = ids.iter().copied().collect();
        let rows = client
            .query_typed(
                "SELECT q.wanted, w.tier, w.id::uuid, w.user_id::uuid, w.name::text
                 FROM unnest($1::text[]) q(wanted)
                 JOIN LATERAL (
                     SELECT 0 AS tier, id, user_id, name FROM workflows
                      WHERE amc_workflow_id = q.wanted
                     UNION ALL
                     SELECT 1, id, user_id, name FROM workflows WHERE workflow_id = q.wanted
                 ) w ON true",
                &[(&wanted, Type::TEXT_ARRAY)],
            )
            .await
            .map_err(|e| WarehouseError::Refused(error_text(&e)))?;
        // Per id, the rows of the first column that matches at all.
        let mut found: HashMap<String, (i32, Vec<Workflow>)> = HashMap::new();
        for row in rows {
            let read =
                |e: tokio_postgres::Error| WarehouseError::Refused(format!("workflows: {e}"));
            let tier: i32 = row.try_get(1).map_err(read)?;
            let workflow = Workflow {
                id: row.try_get(2).map_err(read)?,
                user_id: row.try_get(3).map_err(read)?,
                name: row.try_get(4).map_err(read)?,
            };
            let entry = found
                .entry(row.try_get(0).map_err(read)?)
                .or_insert((tier, Vec::new()));
            if tier < entry.0 {
                *entry = (tier, Vec::new());
            }
            if tier == entry.0 {
                entry.1.push(workflow);
            }
        }
        for (wanted, (tier, mut candidates)) in found {
            if candidates.len() > 1 {
                return Err(SchemaError::AmbiguousReference {
                    table: WORKFLOWS,
                    column: if tier == 0 {
                        "amc_workflow_id"
                    } else {
                        "workflow_id"
                    },
                    value: wanted,
                    count: candidates.len() as i64,
                }
                .into());
            }
            if let Some(workflow) = candidates.pop() {
                self.workflows.insert(wanted, workflow);
            }
        }
        first_missing(ids, |id| self.workflows.contains_key(id)).map_or(Ok(()), |id| {
            Err(SchemaError::MissingReference {
                table: WORKFLOWS,
                column: "amc_workflow_id (or workflow_id)",
                value: id,
                key: "workflow_id",
            }
            .into())
        })
    }

    async fn resolve_instances(
        &mut self,
        client: &Client,
        ids: &BTreeSet<&str>,
    ) -> Result<(), WarehouseError> {
        let wanted: Vec<&str> = ids.iter().copied().collect();
        let rows = client
            .query_typed(
                "SELECT instance_id::text, id::uuid FROM amc_instances
                 WHERE instance_id = ANY($1::text[])",
                &[(&wanted, Type::TEXT_ARRAY)],
            )
            .await
            .map_err(|e| WarehouseError::Refused(error_text(&e)))?;
        for row in rows {
            let read = |e| WarehouseError::Refused(format!("amc_instances: {e}"));
            self.instances
                .insert(row.try_get(0).map_err(read)?, row.try_get(1).map_err(read)?);
        }
        first_missing(ids, |id| self.instances.contains_key(id)).map_or(Ok(()), |id| {
            Err(SchemaError::MissingReference {
                table: INSTANCES,
                column: "instance_id",
                value: id,
                key: "instance_id",
            }
            .into())
        })
    }
}

/// The first of `ids` that `known` does not hold.
fn first_missing(ids: &BTreeSet<&str>, known: impl Fn(&str) -> bool) -> Option<String> {
    ids.iter().find(|id| !known(id)).map(|id| (*id).to_owned())
}
