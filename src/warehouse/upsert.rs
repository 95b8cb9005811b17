//! Landing one batch: one transaction, parents first, each table one
//! `unnest` upsert guarded by `journal_seq` so an older journal state never
//! overwrites a newer row (I3). BEGIN (with the session's timeouts), the
//! upserts and COMMIT are pipelined: one round trip per batch, which is
//! what matters with Postgres a region away.
//!
//! Owns sending and the classification of what went wrong (a row refused,
//! the session lost, a timeout). The statements are `columns`'.

use std::sync::Arc;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

use super::columns::{Param, Upserts};
use super::rows::{Batch, ExecutionStatus};
use super::{Warehouse, WarehouseError, error_text};

/// One batch made ready to send: its statements' parameters, built with
/// the application's ids resolved. It owns everything it sends, so several
/// can be on the wire at once while the next one is prepared.
pub struct Prepared {
    client: Arc<Client>,
    upserts: Arc<Upserts>,
    begin: String,
    collections: (Vec<Param>, usize),
    executions: (Vec<Param>, usize),
    weeks: (Vec<Param>, usize),
    /// Completed executions an AFTER UPDATE trigger should hear of.
    completed: Vec<uuid::Uuid>,
}

impl Warehouse {
    /// Lands one batch in one transaction. A row is never overwritten by an
    /// older journal state; the same state may be written again (that is
    /// how `verify --repair` mends a row edited by hand).
    pub async fn apply(&mut self, batch: &Batch) -> Result<(), WarehouseError> {
        self.prepare(batch).await?.send().await
    }

    /// Resolves what `batch` references (a round trip only for ids not
    /// seen on this connection) and builds its parameters; nothing of the
    /// batch is written yet.
    pub async fn prepare(&mut self, batch: &Batch) -> Result<Prepared, WarehouseError> {
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
        let upserts = &self.upserts;
        // An execution inserted already completed meets no AFTER UPDATE
        // trigger: the application's export never hears of it. `send`
        // touches those once more, in the same transaction: the update the
        // application's own poller would have made.
        let completed = if self.shape.execution_update_triggers {
            batch
                .executions
                .iter()
                .filter(|e| e.status == ExecutionStatus::Completed)
                .map(|e| e.id)
                .collect()
        } else {
            Vec::new()
        };
        Ok(Prepared {
            client: Arc::clone(&self.client),
            upserts: Arc::clone(upserts),
            begin: format!(
                "BEGIN; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}",
                self.timeouts.statement.as_millis(),
                self.timeouts.lock.as_millis()
            ),
            collections: (
                upserts
                    .collections
                    .collection_params(&batch.collections, &self.refs),
                batch.collections.len(),
            ),
            executions: (
                upserts
                    .executions
                    .execution_params(&batch.executions, &self.refs),
                batch.executions.len(),
            ),
            weeks: (upserts.weeks.week_params(&batch.weeks), batch.weeks.len()),
            completed,
        })
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

impl Prepared {
    /// Sends the batch as one transaction and waits for its COMMIT. Every
    /// statement is queued on the connection at the first poll, BEGIN
    /// first and COMMIT last, so a batch polled once is on the wire whole
    /// and the next one queued behind it cannot interleave with it.
    pub async fn send(self) -> Result<(), WarehouseError> {
        let _timed = crate::telemetry::counters::POSTGRES_LATENCY.time();
        let client = &*self.client;
        let (collections, executions, weeks) = (&self.collections, &self.executions, &self.weeks);
        let touched = [(&self.completed as &(dyn ToSql + Sync), Type::UUID_ARRAY)];
        // Biased: the first poll sends each request in this order. Every
        // answer is awaited, COMMIT's too, so a failed batch always ends its
        // transaction (Postgres turns that COMMIT into a ROLLBACK) before
        // the session is used again.
        let (begun, collections, executions, touch, weeks, commit) = tokio::join!(
            biased;
            client.batch_execute(&self.begin),
            upsert(client, &self.upserts.collections.sql, &collections.0, collections.1),
            upsert(client, &self.upserts.executions.sql, &executions.0, executions.1),
            async {
                if self.completed.is_empty() {
                    return Ok(0);
                }
                client.execute_typed(TOUCH_INSERTED_COMPLETED, &touched).await
            },
            upsert(client, &self.upserts.weeks.sql, &weeks.0, weeks.1),
            client.batch_execute("COMMIT"),
        );
        begun
            .and(collections)
            .and(executions)
            .and(touch)
            .and(weeks)
            .and(commit)
            .map(|_| ())
            .map_err(|e| classify(&e))
    }
}

/// Only the rows this transaction inserted: an upsert that updated (or
/// skipped, under the journal_seq guard) a row holds its lock, which
/// Postgres keeps in the row's `xmax`; a row just inserted has none (the
/// same test as the well-known `RETURNING xmax = 0`). An updated row has
/// met the trigger already, so touching it again would only double the
/// work of a catch-up.
const TOUCH_INSERTED_COMPLETED: &str = "UPDATE workflow_executions SET updated_at = updated_at
     WHERE id = ANY($1::uuid[]) AND status = 'completed' AND xmax = 0";

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
