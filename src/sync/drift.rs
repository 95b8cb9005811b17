//! `chronicle verify`: compares the journal's tracking rows with Postgres's
//! and names every difference: rows missing on either side, tracking columns
//! that differ, foreign keys that point nowhere, and how many weeks carry an
//! execution_id per collection (what the old verification script measured).
//!
//! Owns the comparison only. Reading is the journal's and the warehouse's;
//! repair re-queues rows through the journal's outbox like any change.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use serde::Serialize;

use crate::journal::{Entity, Journal, JournalError};
use crate::warehouse::Snapshot;
use crate::warehouse::rows::{Batch, CollectionRow, ExecutionRow, NULL, TrackedRow, WeekRow};
use crate::warehouse::{Warehouse, WarehouseError};

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub entity: Entity,
    pub id: String,
    pub problem: Problem,
    pub detail: String,
}

/// How a row's two copies disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Problem {
    /// The journal holds it; Postgres does not.
    #[serde(rename = "missing in postgres")]
    MissingInPostgres,
    /// Postgres holds it under one of this journal's collections; the
    /// journal does not.
    #[serde(rename = "missing in journal")]
    MissingInJournal,
    /// Tracking columns differ.
    #[serde(rename = "differs")]
    Differs,
    /// A foreign key in Postgres points nowhere.
    #[serde(rename = "dangling")]
    Dangling,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::MissingInPostgres => "missing in postgres",
            Problem::MissingInJournal => "missing in journal",
            Problem::Differs => "differs",
            Problem::Dangling => "dangling",
        }
    }

    /// Writing the journal's state again mends it.
    pub fn repairable(self) -> bool {
        matches!(self, Problem::MissingInPostgres | Problem::Differs)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Population {
    pub collection: String,
    pub weeks: usize,
    pub with_execution_id: usize,
    /// Completed weeks Postgres holds without their execution: lineage lost.
    pub completed_without_execution_id: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    pub findings: Vec<Finding>,
    pub population: Vec<Population>,
    /// Rows still waiting in the outbox or quarantine: not drift, just not
    /// there yet.
    pub unsynced: usize,
    /// Postgres rows that belong to no collection of this journal (another
    /// tool's), left out of the comparison.
    pub other_rows: usize,
}

impl DriftReport {
    pub fn has_drift(&self) -> bool {
        !self.findings.is_empty()
    }

    /// Rows whose journal state should be written to Postgres again.
    pub fn repairable(&self) -> Vec<(Entity, String)> {
        self.findings
            .iter()
            .filter(|f| f.problem.repairable())
            .map(|f| (f.entity, f.id.clone()))
            .collect()
    }
}

/// Why the comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
}

/// Reads both sides and compares them: what `verify` prints and the audit's
/// Postgres check reports.
pub async fn check(journal: &Journal, warehouse: &Warehouse) -> Result<DriftReport, DriftError> {
    let ours = journal.all_rows()?;
    let collections: Vec<Uuid> = ours.collections.iter().map(|c| c.id).collect();
    let executions: Vec<Uuid> = ours.executions.iter().map(|e| e.id).collect();
    let theirs = warehouse.snapshot(&collections, &executions).await?;
    Ok(compare(&ours, &theirs, &journal.unsynced()?))
}

/// Compares the journal's rows with Postgres's copy, skipping rows listed
/// in `unsynced` as `(entity, id)`: those are not there yet, which is not
/// drift. A `journal_seq` Postgres does not hold (a row the application
/// wrote and chronicle imported without writing it back) is not compared.
pub fn compare(
    journal: &Batch,
    postgres: &Snapshot,
    unsynced: &BTreeSet<(Entity, String)>,
) -> DriftReport {
    let mut findings = Vec::new();
    let ours: Vec<TrackedRow> = journal
        .collections
        .iter()
        .map(CollectionRow::tracked)
        .chain(journal.executions.iter().map(ExecutionRow::tracked))
        .chain(journal.weeks.iter().map(WeekRow::tracked))
        .collect();
    let theirs: HashMap<(Entity, &str), &TrackedRow> = postgres
        .rows
        .iter()
        .map(|r| ((r.entity, r.id.as_str()), r))
        .collect();
    let mut seen = BTreeSet::new();
    let mut skipped = 0;
    for row in &ours {
        seen.insert((row.entity, row.id.as_str()));
        if unsynced.contains(&(row.entity, row.id.clone())) {
            skipped += 1;
            continue;
        }
        let Some(pg) = theirs.get(&(row.entity, row.id.as_str())) else {
            findings.push(Finding {
                entity: row.entity,
                id: row.id.clone(),
                problem: Problem::MissingInPostgres,
                detail: String::new(),
            });
            continue;
        };
        let differing: Vec<String> = row
            .columns
            .iter()
            .filter(|(column, value)| {
                let held = pg.get(column).unwrap_or(NULL);
                held != value && !(*column == "journal_seq" && held == NULL)
            })
            .map(|(column, value)| {
                format!(
                    "{column}: journal {value} / postgres {}",
                    pg.get(column).unwrap_or(NULL)
                )
            })
            .collect();
        if !differing.is_empty() {
            findings.push(Finding {
                entity: row.entity,
                id: row.id.clone(),
                problem: Problem::Differs,
                detail: differing.join("; "),
            });
        }
    }
    for row in &postgres.rows {
        if !seen.contains(&(row.entity, row.id.as_str())) {
            findings.push(Finding {
                entity: row.entity,
                id: row.id.clone(),
                problem: Problem::MissingInJournal,
                detail: String::new(),
            });
        }
    }
    let pg_weeks: Vec<&TrackedRow> = postgres
        .rows
        .iter()
        .filter(|r| r.entity == Entity::Week)
        .collect();
    let has = |entity: Entity, id: &str| theirs.contains_key(&(entity, id));
    for week in &pg_weeks {
        let execution = week.get("execution_id").unwrap_or(NULL);
        if execution != NULL && !has(Entity::Execution, execution) {
            findings.push(Finding {
                entity: Entity::Week,
                id: week.id.clone(),
                problem: Problem::Dangling,
                detail: format!("execution_id {execution} is not in workflow_executions"),
            });
        }
        let collection = week.get("collection_id").unwrap_or(NULL);
        if !has(Entity::Collection, collection) {
            findings.push(Finding {
                entity: Entity::Week,
                id: week.id.clone(),
                problem: Problem::Dangling,
                detail: format!("collection_id {collection} is not in report_data_collections"),
            });
        }
    }
    let names: HashMap<String, &str> = journal
        .collections
        .iter()
        .map(|c| (c.id.to_string(), c.name.as_str()))
        .collect();
    let mut population: BTreeMap<String, Population> = BTreeMap::new();
    for week in &pg_weeks {
        let collection = week.get("collection_id").unwrap_or(NULL);
        let name = names
            .get(collection)
            .copied()
            .unwrap_or(collection)
            .to_owned();
        let entry = population.entry(name.clone()).or_insert(Population {
            collection: name,
            weeks: 0,
            with_execution_id: 0,
            completed_without_execution_id: 0,
        });
        entry.weeks += 1;
        if week.get("execution_id").is_some_and(|e| e != NULL) {
            entry.with_execution_id += 1;
        } else if week.get("status") == Some("completed") {
            entry.completed_without_execution_id += 1;
        }
    }
    DriftReport {
        findings,
        population: population.into_values().collect(),
        unsynced: skipped,
        other_rows: postgres.other_rows.max(0) as usize,
    }
}
