//! `chronicle verify`: compares the journal's tracking rows with Postgres's
//! and names every difference: rows missing on either side, tracking columns
//! that differ, foreign keys that point nowhere, and how many weeks carry an
//! execution_id per collection (what the old verification script measured).
//!
//! Owns the comparison only. Reading is the journal's and the warehouse's;
//! repair re-queues rows through the journal's outbox like any change.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::journal::{Entity, Journal, JournalError};
use crate::warehouse::rows::{Batch, CollectionRow, ExecutionRow, WeekRow};
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
    let theirs = warehouse.all_rows().await?;
    Ok(compare(&ours, &theirs, &journal.unsynced()?))
}

/// Compares `journal` with `postgres`, skipping rows listed in `unsynced`
/// as `(entity, id)`.
pub fn compare(
    journal: &Batch,
    postgres: &Batch,
    unsynced: &BTreeSet<(Entity, String)>,
) -> DriftReport {
    let mut findings = Vec::new();
    let ours: BTreeSet<_> = journal.collections.iter().map(|c| c.id).collect();
    let pg_weeks: Vec<&WeekRow> = postgres
        .weeks
        .iter()
        .filter(|w| ours.contains(&w.collection_id))
        .collect();
    let referenced: BTreeSet<_> = pg_weeks.iter().filter_map(|w| w.execution_id).collect();
    let journal_executions: BTreeSet<_> = journal.executions.iter().map(|e| e.id).collect();
    let pg_executions: Vec<&ExecutionRow> = postgres
        .executions
        .iter()
        .filter(|e| journal_executions.contains(&e.id) || referenced.contains(&e.id))
        .collect();
    let pg_collections: Vec<&CollectionRow> = postgres
        .collections
        .iter()
        .filter(|c| ours.contains(&c.id))
        .collect();
    let other_rows = postgres.len() - pg_weeks.len() - pg_executions.len() - pg_collections.len();

    let mut skipped = 0;
    let mut side = |entity: Entity,
                    journal_rows: Vec<(String, Vec<(&'static str, String)>)>,
                    pg_rows: Vec<(String, Vec<(&'static str, String)>)>| {
        let pg: HashMap<_, _> = pg_rows.into_iter().collect();
        let mut seen = BTreeSet::new();
        for (id, columns) in journal_rows {
            seen.insert(id.clone());
            if unsynced.contains(&(entity, id.clone())) {
                skipped += 1;
                continue;
            }
            match pg.get(&id) {
                None => findings.push(Finding {
                    entity,
                    id,
                    problem: Problem::MissingInPostgres,
                    detail: String::new(),
                }),
                Some(theirs) => {
                    let differing: Vec<String> = columns
                        .iter()
                        .zip(theirs)
                        .filter(|(a, b)| a.1 != b.1)
                        .map(|(a, b)| format!("{}: journal {} / postgres {}", a.0, a.1, b.1))
                        .collect();
                    if !differing.is_empty() {
                        findings.push(Finding {
                            entity,
                            id,
                            problem: Problem::Differs,
                            detail: differing.join("; "),
                        });
                    }
                }
            }
        }
        for id in pg.keys().filter(|id| !seen.contains(*id)) {
            findings.push(Finding {
                entity,
                id: id.clone(),
                problem: Problem::MissingInJournal,
                detail: String::new(),
            });
        }
    };
    side(
        Entity::Collection,
        journal.collections.iter().map(collection_columns).collect(),
        pg_collections.into_iter().map(collection_columns).collect(),
    );
    side(
        Entity::Execution,
        journal.executions.iter().map(execution_columns).collect(),
        pg_executions.iter().map(|e| execution_columns(e)).collect(),
    );
    side(
        Entity::Week,
        journal.weeks.iter().map(week_columns).collect(),
        pg_weeks.iter().map(|w| week_columns(w)).collect(),
    );

    let pg_execution_ids: BTreeSet<_> = postgres.executions.iter().map(|e| e.id).collect();
    let pg_collection_ids: BTreeSet<_> = postgres.collections.iter().map(|c| c.id).collect();
    for week in &pg_weeks {
        if let Some(execution) = week.execution_id.filter(|e| !pg_execution_ids.contains(e)) {
            findings.push(Finding {
                entity: Entity::Week,
                id: week.id.to_string(),
                problem: Problem::Dangling,
                detail: format!("execution_id {execution} is not in workflow_executions"),
            });
        }
        if !pg_collection_ids.contains(&week.collection_id) {
            findings.push(Finding {
                entity: Entity::Week,
                id: week.id.to_string(),
                problem: Problem::Dangling,
                detail: format!(
                    "collection_id {} is not in report_data_collections",
                    week.collection_id
                ),
            });
        }
    }

    let names: HashMap<_, _> = journal
        .collections
        .iter()
        .map(|c| (c.id, c.name.clone()))
        .collect();
    let mut population: BTreeMap<String, Population> = BTreeMap::new();
    for week in &pg_weeks {
        let name = names[&week.collection_id].clone();
        let entry = population.entry(name.clone()).or_insert(Population {
            collection: name,
            weeks: 0,
            with_execution_id: 0,
            completed_without_execution_id: 0,
        });
        entry.weeks += 1;
        if week.execution_id.is_some() {
            entry.with_execution_id += 1;
        } else if week.status == "completed" {
            entry.completed_without_execution_id += 1;
        }
    }
    DriftReport {
        findings,
        population: population.into_values().collect(),
        unsynced: skipped,
        other_rows,
    }
}

fn text<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or("NULL".into(), |v| v.to_string())
}

fn collection_columns(c: &CollectionRow) -> (String, Vec<(&'static str, String)>) {
    (
        c.id.to_string(),
        vec![
            ("name", c.name.clone()),
            ("start_date", c.start_date.to_string()),
            ("end_date", text(&c.end_date)),
            ("status", c.status.clone()),
            ("weeks_completed", c.weeks_completed.to_string()),
            ("journal_seq", c.journal_seq.to_string()),
        ],
    )
}

fn execution_columns(e: &ExecutionRow) -> (String, Vec<(&'static str, String)>) {
    (
        e.id.to_string(),
        vec![
            ("amc_execution_id", text(&e.amc_execution_id)),
            ("status", e.status.clone()),
            ("row_count", text(&e.row_count)),
            ("error_message", text(&e.error_message)),
            ("started_at", text(&e.started_at)),
            ("completed_at", text(&e.completed_at)),
            ("journal_seq", e.journal_seq.to_string()),
        ],
    )
}

fn week_columns(w: &WeekRow) -> (String, Vec<(&'static str, String)>) {
    (
        w.id.to_string(),
        vec![
            ("status", w.status.clone()),
            ("execution_id", text(&w.execution_id)),
            ("amc_execution_id", text(&w.amc_execution_id)),
            ("record_count", text(&w.record_count)),
            ("data_checksum", text(&w.data_checksum)),
            ("error_message", text(&w.error_message)),
            ("week_end_date", w.week_end_date.to_string()),
            ("journal_seq", w.journal_seq.to_string()),
        ],
    )
}
