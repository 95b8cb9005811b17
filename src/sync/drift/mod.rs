//! `chronicle verify`: compares the journal's tracking rows with Postgres's
//! and names every difference: rows missing on either side, tracking columns
//! that differ, foreign keys that point nowhere, and how many weeks carry an
//! execution_id per collection (what the old verification script measured).
//!
//! Both sides are walked table by table in id order, a page at a time
//! (`walk`), so memory stays bounded by the page however long the history;
//! the foreign-key checks and the counts are Postgres's own queries.
//!
//! Owns the comparison only. Reading is the journal's (`tracked`) and the
//! warehouse's (`scan`); repair re-queues rows through the journal's
//! outbox like any change.

mod walk;

use std::collections::HashMap;

use serde::Serialize;

use crate::journal::{Entity, Journal, JournalError};
use crate::warehouse::{Scan, Warehouse, WarehouseError};
use walk::Walk;

/// Rows per page on each side: about 1 MB of rows in memory at a time.
pub const PAGE: usize = 1_000;

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
    /// A side's rows did not come in id order: comparing them would pair
    /// the wrong rows. Nothing is repaired.
    #[error("verify cannot pair the rows: {0}")]
    OutOfOrder(String),
}

/// Reads both sides and compares them: what `verify` prints and the audit's
/// Postgres check reports.
pub async fn check(journal: &Journal, warehouse: &Warehouse) -> Result<DriftReport, DriftError> {
    check_in_pages(journal, warehouse, PAGE).await
}

/// [`check`], `page` rows at a time on each side.
///
/// Rows waiting in the outbox or the quarantine are not there yet, which
/// is not drift: they are counted, not compared. A `journal_seq` Postgres
/// does not hold (a row the application wrote and chronicle imported
/// without writing it back) is not compared.
pub async fn check_in_pages(
    journal: &Journal,
    warehouse: &Warehouse,
    page: usize,
) -> Result<DriftReport, DriftError> {
    let collections = journal.collection_names()?;
    let unsynced = journal.unsynced()?;
    let scan = warehouse
        .scan(collections.iter().map(|(id, _)| *id).collect(), page)
        .await?;
    let compared = compare(journal, &scan, &unsynced, &collections, page).await;
    // The snapshot ends either way, so the session can sync next.
    let ended = scan.end().await;
    let report = compared?;
    ended?;
    Ok(report)
}

async fn compare(
    journal: &Journal,
    scan: &Scan<'_>,
    unsynced: &std::collections::BTreeSet<(Entity, String)>,
    collections: &[(uuid::Uuid, String)],
    page: usize,
) -> Result<DriftReport, DriftError> {
    let mut walk = Walk::new(journal, scan, unsynced, page);
    for entity in [Entity::Collection, Entity::Execution, Entity::Week] {
        walk.table(entity).await?;
    }
    let mut findings = walk.findings;
    findings.extend(scan.dangling().await?.into_iter().map(|d| {
        let table = match d.column {
            "collection_id" => "report_data_collections",
            _ => "workflow_executions",
        };
        Finding {
            entity: Entity::Week,
            id: d.week,
            problem: Problem::Dangling,
            detail: format!("{} {} is not in {table}", d.column, d.value),
        }
    }));
    let names: HashMap<uuid::Uuid, &str> = collections
        .iter()
        .map(|(id, name)| (*id, name.as_str()))
        .collect();
    let mut population: Vec<Population> = scan
        .population()
        .await?
        .into_iter()
        .map(|p| Population {
            collection: names
                .get(&p.collection)
                .map_or_else(|| p.collection.to_string(), |n| (*n).to_owned()),
            weeks: p.weeks,
            with_execution_id: p.with_execution_id,
            completed_without_execution_id: p.completed_without_execution_id,
        })
        .collect();
    population.sort_by(|a, b| a.collection.cmp(&b.collection));
    let total = scan.total_rows().await?;
    Ok(DriftReport {
        findings,
        population,
        unsynced: walk.skipped,
        other_rows: total.saturating_sub(walk.ours_in_postgres),
    })
}
