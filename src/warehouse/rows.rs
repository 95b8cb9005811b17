//! The tracking rows chronicle keeps in Supabase, as the journal hands them
//! to the reconciler: one struct per Postgres table of DESIGN.md.
//!
//! Owns only the shapes. The journal fills them; the warehouse writes them.
//! Every row carries `journal_seq`, the journal sequence number of the last
//! change it reflects, so an older copy can never overwrite a newer one.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

/// `report_data_collections`.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionRow {
    pub id: Uuid,
    pub name: String,
    pub workflow_id: String,
    pub instance_id: String,
    pub start_date: NaiveDate,
    pub end_date: Option<NaiveDate>,
    pub status: String,
    pub weeks_completed: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub journal_seq: i64,
}

/// `workflow_executions`: one row per execution attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRow {
    /// The attempt id (UUIDv7), known before AMC is asked.
    pub id: Uuid,
    pub amc_execution_id: Option<String>,
    pub workflow_id: String,
    pub instance_id: String,
    pub status: String,
    pub execution_parameters: serde_json::Value,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub row_count: Option<i32>,
    pub error_message: Option<String>,
    pub triggered_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub journal_seq: i64,
}

/// `report_data_weeks`.
#[derive(Debug, Clone, PartialEq)]
pub struct WeekRow {
    pub id: Uuid,
    pub collection_id: Uuid,
    pub week_start_date: NaiveDate,
    /// Inclusive: start + 6 days, as the application this replaces stored it.
    pub week_end_date: NaiveDate,
    pub status: String,
    pub execution_id: Option<Uuid>,
    pub amc_execution_id: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub record_count: Option<i32>,
    pub data_checksum: Option<String>,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub journal_seq: i64,
}

/// A set of rows to land in one Postgres transaction, parents first.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub collections: Vec<CollectionRow>,
    pub executions: Vec<ExecutionRow>,
    pub weeks: Vec<WeekRow>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.collections.is_empty() && self.executions.is_empty() && self.weeks.is_empty()
    }

    pub fn len(&self) -> usize {
        self.collections.len() + self.executions.len() + self.weeks.len()
    }
}
