//! The state tables as the audit's replay sees them: each row reduced to
//! the columns the event log determines, streamed so the audit never holds
//! the tables beside its replay.
//!
//! Owns the query; the comparison is the audit's.

use std::collections::BTreeMap;

use serde_json::Value;

use super::super::attempts::result_digest;
use super::super::sql::sqlite_text;
use super::super::{Journal, Result};

/// One state-table row reduced to the columns the event log determines,
/// keyed by column name, as the audit's replay rebuilds them. Names are
/// static: the audit holds a row per week and attempt, and a heap string
/// per column name of each would cost about as much as the values.
pub type StateRow = BTreeMap<&'static str, Value>;

/// The state tables: `(entity, id)` to the row's replayable columns.
pub type StateTables = BTreeMap<(String, String), StateRow>;

impl Journal {
    /// Streams the columns of every state-table row that the event log
    /// determines to `each` (entity, id, row), for the audit to compare with
    /// its replay without holding the tables beside it.
    pub fn each_state_row(
        &self,
        mut each: impl FnMut(&'static str, String, StateRow),
    ) -> Result<()> {
        let connection = self.lock();
        let sqlite = |e| self.sqlite(e);
        let queries: [(&'static str, &str, &[&'static str]); 3] = [
            (
                "collection",
                "SELECT id, name, workflow_id, instance_id, start_date, schedule_hash, journal_seq,
                    schedule_file
                 FROM collections",
                &[
                    "name",
                    "workflow_id",
                    "instance_id",
                    "start_date",
                    "schedule_hash",
                    "journal_seq",
                    "schedule_file",
                ],
            ),
            (
                "week",
                "SELECT id, collection_id, week_start, status, attempt_id, attempts,
                    record_count, data_checksum, journal_seq, error_message FROM weeks",
                &[
                    "collection_id",
                    "week_start",
                    "status",
                    "attempt_id",
                    "attempts",
                    "record_count",
                    "data_checksum",
                    "journal_seq",
                    "error_message",
                ],
            ),
            (
                "execution",
                "SELECT a.id, a.week_id, a.state, a.amc_execution_id, a.amc_status, a.row_count,
                    a.data_checksum, a.journal_seq, a.error_message, a.triggered_by,
                    a.superseded_at IS NOT NULL, r.columns, r.sample_rows, r.summary_stats
                 FROM attempts a LEFT JOIN attempt_results r ON r.attempt_id = a.id",
                &[
                    "week_id",
                    "state",
                    "amc_execution_id",
                    "amc_status",
                    "row_count",
                    "data_checksum",
                    "journal_seq",
                    "error_message",
                    "triggered_by",
                    "superseded",
                ],
            ),
        ];
        for (entity, sql, columns) in queries {
            let mut statement = connection.prepare(sql).map_err(sqlite)?;
            let mut rows = statement.query([]).map_err(sqlite)?;
            while let Some(row) = rows.next().map_err(sqlite)? {
                let id: String = row.get(0).map_err(sqlite)?;
                let mut state = StateRow::new();
                for (i, column) in columns.iter().enumerate() {
                    state.insert(column, sqlite_text(row, i + 1).map_err(sqlite)?);
                }
                if entity == "execution" {
                    state.insert(
                        "result_digest",
                        stored_digest(row, columns.len() + 1).map_err(sqlite)?,
                    );
                }
                each(entity, id, state);
            }
        }
        Ok(())
    }
}

/// The digest of an attempt's stored result (columns, rows, stats at
/// `first`..), or null when it has none.
fn stored_digest(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Value> {
    let columns: Option<String> = row.get(first)?;
    let rows: Option<String> = row.get(first + 1)?;
    let stats: Option<String> = row.get(first + 2)?;
    Ok(match (columns, stats) {
        (Some(columns), Some(stats)) => {
            Value::String(result_digest(&columns, rows.as_deref(), &stats))
        }
        _ => Value::Null,
    })
}
