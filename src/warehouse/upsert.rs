//! Landing one batch: one transaction, parents first, each table one
//! `unnest` upsert guarded by `journal_seq` so an older journal state never
//! overwrites a newer row (I3). BEGIN (with the session's timeouts), the
//! upserts and COMMIT are pipelined: one round trip per batch, which is
//! what matters with Postgres a region away.
//!
//! Owns sending and the classification of what went wrong (a row refused,
//! the session lost, a timeout). The statements are `columns`'.

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

use super::columns::Param;
use super::rows::{Batch, ExecutionStatus};
use super::{Warehouse, WarehouseError, error_text};

impl Warehouse {
    /// Lands one batch in one transaction. A row is never overwritten by an
    /// older journal state; the same state may be written again (that is
    /// how `verify --repair` mends a row edited by hand).
    pub async fn apply(&mut self, batch: &Batch) -> Result<(), WarehouseError> {
        let _timed = crate::telemetry::counters::POSTGRES_LATENCY.time();
        let pairs: Vec<(&str, &str)> = batch
            .collections
            .iter()
            .map(|c| (c.workflow_id.as_str(), c.instance_id.as_str()))
            .chain(
                batch
                    .executions
                    .iter()
                    .map(|e| (e.workflow_id.as_str(), e.instance_id.as_str())),
            )
            .collect();
        self.resolve(&pairs).await?;
        let collections = self
            .upserts
            .collections
            .collection_params(&batch.collections, &self.refs);
        let executions = self
            .upserts
            .executions
            .execution_params(&batch.executions, &self.refs);
        let weeks = self.upserts.weeks.week_params(&batch.weeks);
        // An execution inserted already completed meets no AFTER UPDATE
        // trigger: the application's export never hears of it. Touching it
        // once more, in the same transaction, is the update the application's
        // own poller would have made.
        let completed: Vec<uuid::Uuid> = if self.shape.execution_update_triggers {
            batch
                .executions
                .iter()
                .filter(|e| e.status == ExecutionStatus::Completed)
                .map(|e| e.id)
                .collect()
        } else {
            Vec::new()
        };
        let begin = format!(
            "BEGIN; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}",
            self.timeouts.statement.as_millis(),
            self.timeouts.lock.as_millis()
        );
        let client = &self.client;
        // Biased: the first poll sends each request in this order. Every
        // answer is awaited, COMMIT's too, so a failed batch always ends its
        // transaction (Postgres turns that COMMIT into a ROLLBACK) before
        // the session is used again.
        let touched = [(&completed as &(dyn ToSql + Sync), Type::UUID_ARRAY)];
        let (begun, collections, executions, touch, weeks, commit) = tokio::join!(
            biased;
            client.batch_execute(&begin),
            upsert(client, &self.upserts.collections.sql, &collections, batch.collections.len()),
            upsert(client, &self.upserts.executions.sql, &executions, batch.executions.len()),
            async {
                if completed.is_empty() {
                    return Ok(0);
                }
                client.execute_typed(TOUCH_COMPLETED, &touched).await
            },
            upsert(client, &self.upserts.weeks.sql, &weeks, batch.weeks.len()),
            client.batch_execute("COMMIT"),
        );
        begun
            .and(collections)
            .and(executions)
            .and(touch)
            .and(weeks)
            .and(commit)
            .map_err(|e| classify(&e))
    }

    /// Records the journal's chain head as Postgres sees it at this sync
    /// (`chronicle.chain_heads`); the same head twice is one row.
    pub async fn record_chain_head(
        &self,
        journal_id: &str,
        seq: i64,
        hash: &str,
    ) -> Result<(), WarehouseError> {
        self.client
            .execute_typed(
                "INSERT INTO chronicle.chain_heads (journal_id, seq, hash) VALUES ($1, $2, $3)
                 ON CONFLICT (journal_id, seq) DO NOTHING",
                &[
                    (&journal_id, Type::TEXT),
                    (&seq, Type::INT8),
                    (&hash, Type::TEXT),
                ],
            )
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }
}

const TOUCH_COMPLETED: &str = "UPDATE workflow_executions SET updated_at = updated_at
     WHERE id = ANY($1::uuid[]) AND status = 'completed'";

/// Skips the round trip for a table with no rows in the batch.
async fn upsert(
    client: &Client,
    sql: &str,
    params: &[Param],
    rows: usize,
) -> Result<u64, tokio_postgres::Error> {
    if rows == 0 {
        return Ok(0);
    }
    let params: Vec<(&(dyn ToSql + Sync), Type)> = params
        .iter()
        .map(|(value, ty)| (value.as_ref() as &(dyn ToSql + Sync), ty.clone()))
        .collect();
    client.execute_typed(sql, &params).await
}

/// Whose fault a failed batch is: a row's (refused: found and quarantined),
/// the clock's (timed out), or the session's (retried later; nothing is
/// quarantined for it).
pub(super) fn classify(error: &tokio_postgres::Error) -> WarehouseError {
    let code = error.code();
    if code == Some(&SqlState::QUERY_CANCELED) || code == Some(&SqlState::LOCK_NOT_AVAILABLE) {
        return WarehouseError::TimedOut(error_text(error));
    }
    // "Current transaction is aborted" blames the session, not a row.
    let session = code == Some(&SqlState::IN_FAILED_SQL_TRANSACTION);
    if session || error.is_closed() || error.as_db_error().is_none() {
        WarehouseError::Unreachable {
            target: "the connected server".into(),
            why: error_text(error),
        }
    } else {
        WarehouseError::Refused(error_text(error))
    }
}
