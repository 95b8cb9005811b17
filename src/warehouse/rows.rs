//! The tracking rows chronicle keeps in Postgres, in the application's
//! words (../shared/seed-app/README.md): one struct per table, the status
//! words the application's UI and API filter on, its readable `coll_`/
//! `exec_` ids, and the rules that turn the journal's state into them.
//!
//! This is the one definition of what Postgres holds: the journal builds
//! the rows it sends with these rules, `lineage` applies them to replayed
//! state, and `verify` compares the columns `tracked_columns` names. Which
//! columns a given database has, and how each is written, is `columns`'.
//! Every row carries `journal_seq`, the journal sequence number of the last
//! change it reflects, so an older copy can never overwrite a newer one.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The three kinds of tracking row Postgres keeps (DESIGN.md, "Postgres").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Entity {
    /// `report_data_collections`; the journal's `collections`.
    Collection,
    /// `workflow_executions`; the journal's `attempts`.
    Execution,
    /// `report_data_weeks`; the journal's `weeks`.
    Week,
}

impl Entity {
    /// The word stored in the outbox and quarantine.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Collection => "collection",
            Entity::Execution => "execution",
            Entity::Week => "week",
        }
    }

    /// Reads the stored word back.
    pub fn parse(word: &str) -> Option<Entity> {
        Some(match word {
            "collection" => Entity::Collection,
            "execution" => Entity::Execution,
            "week" => Entity::Week,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `report_data_collections.status`: what the application writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectionStatus {
    /// Recorded, nothing run yet.
    Pending,
    /// Weeks are being worked on, or wait for their run.
    Running,
    /// `chronicle pause` holds its schedule.
    Paused,
    /// Every week it covers is completed.
    Completed,
    /// Nothing is left to run and some week failed after its retries.
    Failed,
}

impl CollectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CollectionStatus::Pending => "pending",
            CollectionStatus::Running => "running",
            CollectionStatus::Paused => "paused",
            CollectionStatus::Completed => "completed",
            CollectionStatus::Failed => "failed",
        }
    }

    /// A collection's status from its weeks' counts and its schedule's
    /// pause.
    pub fn of(weeks: &WeekCounts, paused: bool) -> CollectionStatus {
        if paused {
            CollectionStatus::Paused
        } else if weeks.pending + weeks.running > 0 {
            if weeks.completed + weeks.failed + weeks.running > 0 {
                CollectionStatus::Running
            } else {
                CollectionStatus::Pending
            }
        } else if weeks.failed > 0 {
            CollectionStatus::Failed
        } else {
            CollectionStatus::Completed
        }
    }
}

/// `workflow_executions.status`: the application's words, never AMC's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Pending => "pending",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Completed => "completed",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Cancelled => "cancelled",
        }
    }

    /// `workflow_executions.progress` (0-100), as the application's UI
    /// shows it.
    pub fn progress(self) -> i32 {
        match self {
            ExecutionStatus::Pending => 0,
            ExecutionStatus::Running => 50,
            ExecutionStatus::Completed | ExecutionStatus::Failed | ExecutionStatus::Cancelled => {
                100
            }
        }
    }
}

/// Weeks of one collection by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WeekCounts {
    pub pending: i64,
    pub running: i64,
    pub completed: i64,
    pub failed: i64,
}

impl WeekCounts {
    pub fn total(&self) -> i64 {
        self.pending + self.running + self.completed + self.failed
    }

    /// `progress_percentage`, rounded down as the application does.
    pub fn progress_percentage(&self) -> i32 {
        match self.total() {
            0 => 0,
            total => (self.completed * 100 / total) as i32,
        }
    }
}

/// The application's readable collection id for one chronicle made:
/// `coll_` and 8 hex digits, as the application mints them, derived from
/// the collection's id so every host and rebuild gives the same one (I5).
pub fn readable_collection_id(collection: Uuid) -> String {
    format!("coll_{}", &digest_hex(collection)[..8])
}

/// The readable execution id of an attempt chronicle made: `exec_` and 16
/// hex digits derived from the attempt id. The application uses 8 digits
/// of a random uuid; 8 derived digits would collide between two of a
/// million attempts about 1 time in 10, 16 digits about 3 times in 10^8,
/// and the column is UNIQUE.
pub fn readable_execution_id(attempt: Uuid) -> String {
    format!("exec_{}", &digest_hex(attempt)[..16])
}

fn digest_hex(id: Uuid) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// `report_data_collections`.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionRow {
    pub id: Uuid,
    /// `collection_id`: the application's row's own when attached.
    pub readable_id: String,
    /// The schedule's name (the `name` column of older chronicle tables,
    /// and `configuration.schedule`).
    pub name: String,
    /// AMC's saved workflow id; the application's database holds the
    /// `workflows(id)` it names.
    pub workflow_id: String,
    /// AMC's instance id; the application's database holds the
    /// `amc_instances(id)` it names.
    pub instance_id: String,
    pub start_date: NaiveDate,
    /// Inclusive end of the latest week the collection covers.
    pub end_date: NaiveDate,
    pub weeks: WeekCounts,
    pub status: CollectionStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub journal_seq: i64,
}

/// A result as the application's dashboards read it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultColumns {
    /// `result_columns`: `[{"name":..,"type":..}]`, one per CSV column.
    pub columns: Option<serde_json::Value>,
    /// `result_rows`: up to `postgres.result_rows_limit` row objects.
    pub rows: Option<serde_json::Value>,
    /// `result_total_rows`.
    pub total_rows: Option<i32>,
    /// `result_sample_size`: how many rows `rows` holds.
    pub sample_size: Option<i32>,
}

/// `workflow_executions`: one row per execution attempt AMC held.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRow {
    /// The attempt id (UUIDv7), known before AMC is asked.
    pub id: Uuid,
    /// `execution_id`: the application's own for imported executions.
    pub readable_id: String,
    pub amc_execution_id: Option<String>,
    /// AMC's saved workflow id (see `CollectionRow::workflow_id`).
    pub workflow_id: String,
    /// AMC's instance id.
    pub instance_id: String,
    pub status: ExecutionStatus,
    pub execution_parameters: serde_json::Value,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub row_count: Option<i32>,
    pub error_message: Option<String>,
    pub result: ResultColumns,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub journal_seq: i64,
}

impl ExecutionRow {
    pub fn duration_seconds(&self) -> Option<i32> {
        seconds_between(self.started_at, self.completed_at)
    }
}

/// `report_data_weeks`.
#[derive(Debug, Clone, PartialEq)]
pub struct WeekRow {
    pub id: Uuid,
    pub collection_id: Uuid,
    pub week_start_date: NaiveDate,
    /// Inclusive: start + 6 days, as the application stores it.
    pub week_end_date: NaiveDate,
    /// `pending`, `running`, `completed` or `failed`: the journal's words,
    /// which are the application's.
    pub status: String,
    /// The `workflow_executions(id)` of the week's current attempt, when
    /// that attempt is sent.
    pub execution_id: Option<Uuid>,
    pub amc_execution_id: Option<String>,
    /// When the current attempt started: also `execution_date`.
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub record_count: Option<i32>,
    pub data_checksum: Option<String>,
    pub error_message: Option<String>,
    /// `total_c` and `avg_c` per numeric column of the week's result.
    pub summary_stats: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub journal_seq: i64,
}

impl WeekRow {
    pub fn execution_time_seconds(&self) -> Option<i32> {
        seconds_between(self.started_at, self.completed_at)
    }
}

fn seconds_between(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Option<i32> {
    let (from, to) = (from?, to?);
    i32::try_from((to - from).num_seconds().max(0)).ok()
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

/// One row reduced to the columns `verify` compares, as text: the journal
/// renders its rows into these, the warehouse reads Postgres's into them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedRow {
    pub entity: Entity,
    pub id: String,
    /// `(column, value)` in `tracked_columns(entity)` order; `NULL` for a
    /// null.
    pub columns: Vec<(&'static str, String)>,
}

impl TrackedRow {
    pub fn get(&self, column: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(name, _)| *name == column)
            .map(|(_, value)| value.as_str())
    }
}

/// The columns `verify` compares per table: what the application shows
/// and chronicle decides. Timestamps are compared as epoch milliseconds
/// (Postgres's text form of one depends on the session's time zone).
pub fn tracked_columns(entity: Entity) -> &'static [&'static str] {
    match entity {
        Entity::Collection => &[
            "collection_id",
            "start_date",
            "end_date",
            "status",
            "weeks_completed",
            "target_weeks",
            "progress_percentage",
            "journal_seq",
        ],
        Entity::Execution => &[
            "execution_id",
            "amc_execution_id",
            "status",
            "row_count",
            "error_message",
            "started_at",
            "completed_at",
            "journal_seq",
        ],
        Entity::Week => &[
            "collection_id",
            "week_start_date",
            "week_end_date",
            "status",
            "execution_id",
            "amc_execution_id",
            "record_count",
            "data_checksum",
            "error_message",
            "journal_seq",
        ],
    }
}

/// How `verify` writes a null.
pub const NULL: &str = "NULL";

fn text<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or(NULL.into(), T::to_string)
}

fn millis(value: &Option<DateTime<Utc>>) -> String {
    value.map_or(NULL.into(), |t| t.timestamp_millis().to_string())
}

impl CollectionRow {
    pub fn tracked(&self) -> TrackedRow {
        TrackedRow {
            entity: Entity::Collection,
            id: self.id.to_string(),
            columns: vec![
                ("collection_id", self.readable_id.clone()),
                ("start_date", self.start_date.to_string()),
                ("end_date", self.end_date.to_string()),
                ("status", self.status.as_str().to_owned()),
                ("weeks_completed", self.weeks.completed.to_string()),
                ("target_weeks", self.weeks.total().to_string()),
                (
                    "progress_percentage",
                    self.weeks.progress_percentage().to_string(),
                ),
                ("journal_seq", self.journal_seq.to_string()),
            ],
        }
    }
}

impl ExecutionRow {
    pub fn tracked(&self) -> TrackedRow {
        TrackedRow {
            entity: Entity::Execution,
            id: self.id.to_string(),
            columns: vec![
                ("execution_id", self.readable_id.clone()),
                ("amc_execution_id", text(&self.amc_execution_id)),
                ("status", self.status.as_str().to_owned()),
                ("row_count", text(&self.row_count)),
                ("error_message", text(&self.error_message)),
                ("started_at", millis(&self.started_at)),
                ("completed_at", millis(&self.completed_at)),
                ("journal_seq", self.journal_seq.to_string()),
            ],
        }
    }
}

impl WeekRow {
    pub fn tracked(&self) -> TrackedRow {
        TrackedRow {
            entity: Entity::Week,
            id: self.id.to_string(),
            columns: vec![
                ("collection_id", self.collection_id.to_string()),
                ("week_start_date", self.week_start_date.to_string()),
                ("week_end_date", self.week_end_date.to_string()),
                ("status", self.status.clone()),
                ("execution_id", text(&self.execution_id)),
                ("amc_execution_id", text(&self.amc_execution_id)),
                ("record_count", text(&self.record_count)),
                ("data_checksum", text(&self.data_checksum)),
                ("error_message", text(&self.error_message)),
                ("journal_seq", self.journal_seq.to_string()),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collection_is_running_until_nothing_is_left_then_completed_or_failed() {
        let counts = |pending, running, completed, failed| WeekCounts {
            pending,
            running,
            completed,
            failed,
        };
        let of = |c: WeekCounts| CollectionStatus::of(&c, false);
        assert_eq!(of(counts(4, 0, 0, 0)), CollectionStatus::Pending);
        assert_eq!(of(counts(3, 0, 1, 0)), CollectionStatus::Running);
        assert_eq!(of(counts(0, 0, 4, 0)), CollectionStatus::Completed);
        assert_eq!(of(counts(0, 0, 3, 1)), CollectionStatus::Failed);
        assert_eq!(
            CollectionStatus::of(&counts(1, 0, 0, 0), true),
            CollectionStatus::Paused
        );
        assert_eq!(counts(1, 0, 2, 0).progress_percentage(), 66);
    }

    #[test]
    fn readable_ids_are_stable_and_shaped_like_the_applications() {
        let id = Uuid::from_u128(42);
        assert_eq!(readable_collection_id(id), readable_collection_id(id));
        assert!(readable_collection_id(id).starts_with("coll_"));
        assert_eq!(readable_collection_id(id).len(), 13);
        assert_eq!(readable_execution_id(id).len(), 21);
        assert_ne!(
            readable_execution_id(id),
            readable_execution_id(Uuid::from_u128(43))
        );
    }
}
