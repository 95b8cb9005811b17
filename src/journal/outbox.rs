//! The outbox: an append-only log of tracking rows whose latest change
//! Postgres has not acknowledged, read in batches by the reconciler and
//! acknowledged only after Postgres committed (I3); and the quarantine of
//! rows Postgres refused, kept with its error (I4).
//!
//! Owns the queue and its bookkeeping. The rows' content is `rows`'; the
//! sending is `sync::reconciler`'s.

use std::collections::BTreeSet;

use chrono::Utc;
use rusqlite::params;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::Serialize;
use serde_json::json;

use super::alerts::{self, AlertKind, NewAlert};
use super::sql::timestamp;
use super::{Journal, Result, rows};
use crate::warehouse::rows::Batch;
pub use crate::warehouse::rows::Entity;

/// The journal's state table of these rows.
fn table_of(entity: Entity) -> &'static str {
    match entity {
        Entity::Collection => "collections",
        Entity::Execution => "attempts",
        Entity::Week => "weeks",
    }
}

impl ToSql for Entity {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Entity {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let word = value.as_str()?;
        Entity::parse(word).ok_or_else(|| {
            FromSqlError::Other(format!("`{word}` is not collection, execution or week").into())
        })
    }
}

/// One change waiting for Postgres: which row, and the sequence number of
/// the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Position in the outbox log: what acknowledging deletes.
    pub id: i64,
    pub entity: Entity,
    pub entity_id: String,
    pub seq: i64,
}

/// A batch read from the outbox, with the entries to acknowledge once
/// Postgres has committed it.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    pub batch: Batch,
    pub entries: Vec<OutboxEntry>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The outbox position the next batch starts after.
    pub fn last_entry(&self) -> Option<i64> {
        self.entries.last().map(|e| e.id)
    }
}

/// A row Postgres refused, as `chronicle quarantine` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Quarantined {
    pub id: i64,
    pub entity: Entity,
    pub entity_id: String,
    pub error: String,
    pub quarantined_at: String,
}

impl Journal {
    /// Up to `limit` changed rows from the outbox, oldest change first, with
    /// the parents they reference.
    pub fn pending(&self, limit: usize) -> Result<Pending> {
        self.pending_after(0, limit)
    }

    /// Up to `limit` changed rows whose outbox entries come after entry
    /// `after`: the reconciler reads the next batch this way while the
    /// ones before it are still on their way to Postgres, unacknowledged.
    pub fn pending_after(&self, after: i64, limit: usize) -> Result<Pending> {
        let entries = {
            let connection = self.lock();
            let mut statement = connection
                .prepare_cached(
                    "SELECT id, entity, entity_id, seq FROM outbox WHERE id > ?1
                     ORDER BY id LIMIT ?2",
                )
                .map_err(|e| self.sqlite(e))?;
            let rows = statement
                .query_map([after, limit as i64], |row| {
                    Ok(OutboxEntry {
                        id: row.get(0)?,
                        entity: row.get(1)?,
                        entity_id: row.get(2)?,
                        seq: row.get(3)?,
                    })
                })
                .map_err(|e| self.sqlite(e))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| self.sqlite(e))?
        };
        let batch = self.batch_for(&entries)?;
        Ok(Pending { batch, entries })
    }

    /// The current state of the rows `entries` name, plus the parents they
    /// reference, so foreign keys hold within one Postgres transaction.
    pub fn batch_for(&self, entries: &[OutboxEntry]) -> Result<Batch> {
        let mut connection = self.lock();
        // One read transaction: rows and their parents from one snapshot.
        let tx = connection.transaction().map_err(|e| self.sqlite(e))?;
        let mut collections = BTreeSet::new();
        let mut executions = BTreeSet::new();
        let mut weeks = BTreeSet::new();
        for entry in entries {
            let id = entry.entity_id.clone();
            match entry.entity {
                Entity::Collection => collections.insert(id),
                Entity::Execution => executions.insert(id),
                Entity::Week => weeks.insert(id),
            };
        }
        rows::rows_with_parents(&tx, collections, executions, weeks).map_err(|e| self.sqlite(e))
    }

    /// `(entity, id)` of rows Postgres has not seen in their current state:
    /// waiting in the outbox or quarantined.
    pub fn unsynced(&self) -> Result<BTreeSet<(Entity, String)>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(
                "SELECT entity, entity_id FROM outbox
                 UNION SELECT entity, entity_id FROM quarantine",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<rusqlite::Result<BTreeSet<_>>>()
            .map_err(|e| self.sqlite(e))
    }

    pub fn quarantined(&self) -> Result<Vec<Quarantined>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(
                "SELECT id, entity, entity_id, error, quarantined_at FROM quarantine ORDER BY id",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok(Quarantined {
                    id: row.get(0)?,
                    entity: row.get(1)?,
                    entity_id: row.get(2)?,
                    error: row.get(3)?,
                    quarantined_at: row.get(4)?,
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sqlite(e))
    }

    pub fn pending_count(&self) -> Result<i64> {
        let connection = self.lock();
        connection
            .query_row("SELECT count(*) FROM outbox", [], |row| row.get(0))
            .map_err(|e| self.sqlite(e))
    }

    /// Notes the outcome of a sync attempt (not an event: syncing changes
    /// nothing the audit trail is about).
    pub fn record_sync(&self, error: Option<&str>) -> Result<()> {
        let at = timestamp(Utc::now());
        let connection = self.lock();
        let sql = if error.is_none() {
            "UPDATE sync_state SET last_attempt_at = ?1, last_success_at = ?1, last_error = ?2"
        } else {
            "UPDATE sync_state SET last_attempt_at = ?1, last_error = ?2"
        };
        connection
            .execute(sql, params![at, error])
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// Forgets the outbox entries of a batch Postgres has committed. A row
    /// changed again since has a newer entry of its own, which stays.
    pub fn acknowledge(&self, entries: &[OutboxEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let ids = serde_json::Value::Array(entries.iter().map(|e| json!(e.id)).collect());
        let connection = self.lock();
        // Losing an acknowledgement in a crash only re-sends rows Postgres
        // already holds (harmless under the journal_seq guard), so it skips
        // the fsync; the next durable commit syncs the WAL past it anyway.
        connection
            .execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(|e| self.sqlite(e))?;
        let deleted = connection
            .prepare_cached("DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?1))")
            .and_then(|mut delete| delete.execute([ids.to_string()]));
        connection
            .execute_batch("PRAGMA synchronous = FULL")
            .map_err(|e| self.sqlite(e))?;
        deleted.map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// Sets a row Postgres refused aside with the error (I4): every outbox
    /// entry of the row leaves the queue so it cannot block the rows behind
    /// it, and the row is never dropped. `changes` are the entries of that
    /// one row the refused batch carried.
    pub fn quarantine(&self, changes: &[OutboxEntry], error: &str) -> Result<()> {
        let Some(newest) = changes.iter().max_by_key(|e| e.seq) else {
            return Ok(());
        };
        // One transaction with the alert it raises: a quarantined row is
        // never left unannounced (the alert id is the row and its change).
        self.change(|c| {
            c.execute(
                "INSERT INTO quarantine (entity, entity_id, seq, error, quarantined_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![newest.entity, newest.entity_id, newest.seq, error, c.at],
            )?;
            // Its later entries too, or each batch would refuse it again.
            c.execute(
                "DELETE FROM outbox WHERE entity = ?1 AND entity_id = ?2",
                params![newest.entity, newest.entity_id],
            )?;
            alerts::raise(
                c,
                &NewAlert {
                    kind: AlertKind::RowQuarantined,
                    cause: format!("{}:{}:{}", newest.entity, newest.entity_id, newest.seq),
                    subject: newest.entity_id.clone(),
                    summary: format!(
                        "Postgres refused {} {}; it waits in quarantine: {error}",
                        newest.entity, newest.entity_id
                    ),
                    details: json!({
                        "entity": newest.entity,
                        "entity_id": newest.entity_id,
                        "journal_seq": newest.seq,
                        "error": error,
                    }),
                },
            )?;
            Ok(())
        })
    }

    /// Puts quarantined rows (one, or all with `None`) back in the outbox
    /// with their current state. Returns how many.
    pub fn requeue_quarantined(&self, id: Option<i64>) -> Result<usize> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(|e| self.sqlite(e))?;
        let at = timestamp(Utc::now());
        let requeued = tx
            .execute(
                "INSERT INTO outbox (entity, entity_id, seq, queued_at)
                 SELECT entity, entity_id, max(seq), ?1 FROM quarantine
                 WHERE ?2 IS NULL OR id = ?2
                 GROUP BY entity, entity_id",
                params![at, id],
            )
            .and_then(|_| {
                tx.execute(
                    "DELETE FROM quarantine WHERE ?1 IS NULL OR id = ?1",
                    params![id],
                )
            })
            .map_err(|e| self.sqlite(e))?;
        tx.commit().map_err(|e| self.sqlite(e))?;
        Ok(requeued)
    }

    /// Marks rows changed again at their current journal state, so the next
    /// drain rewrites them in Postgres (`verify --repair`).
    pub fn requeue(&self, rows: &[(Entity, String)]) -> Result<()> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(|e| self.sqlite(e))?;
        let at = timestamp(Utc::now());
        for (entity, id) in rows {
            let table = table_of(*entity);
            tx.execute(
                &format!(
                    "INSERT INTO outbox (entity, entity_id, seq, queued_at)
                     SELECT ?1, id, journal_seq, ?3 FROM {table} WHERE id = ?2"
                ),
                params![entity, id, at],
            )
            .map_err(|e| self.sqlite(e))?;
        }
        tx.commit().map_err(|e| self.sqlite(e))
    }
}

/// The first change of one row that Postgres has not acknowledged (waiting
/// in the outbox or quarantined); `None` when Postgres holds its current
/// state. The outbox is scanned: it holds only what waits, and an index on
/// it would slow the reconciler's acknowledgements.
pub(super) fn waiting_since(
    connection: &rusqlite::Connection,
    entity: Entity,
    id: &str,
) -> rusqlite::Result<Option<i64>> {
    connection.query_row(
        "SELECT min(seq) FROM (
            SELECT seq FROM outbox WHERE entity = ?1 AND entity_id = ?2
            UNION ALL SELECT seq FROM quarantine WHERE entity = ?1 AND entity_id = ?2)",
        params![entity, id],
        |row| row.get(0),
    )
}
