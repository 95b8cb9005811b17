//! One journal write: an IMMEDIATE transaction that changes the state
//! tables, appends one typed event to the hash chain and marks the changed
//! rows in the outbox, all under the event's sequence number (I1, I3, I6).
//!
//! Owns the helper every writer uses. Whether the transaction holds other
//! writers' changes too (group commit) is `group`'s; what each write
//! changes is its concern's (`plan`, `attempts`, `scheduler`).

use chrono::Utc;
use rusqlite::{Connection, params};
use uuid::Uuid;

use super::events::Event;
use super::group::WriteError;
use super::outbox::Entity;
use super::sql::timestamp;
use super::{Journal, JournalError, Result, chain};

/// One change in progress: the event it records and the rows it marks.
pub(super) struct Change<'c> {
    /// The connection, inside the change's transaction (or its savepoint
    /// in a group): everything of the write happens, or nothing does.
    pub(super) tx: &'c Connection,
    /// The event's timestamp, also every changed row's `updated_at`.
    pub(super) at: String,
}

impl Change<'_> {
    /// `execute` through the connection's statement cache: these statements
    /// run on every commit, and compiling them each time cost about as much
    /// as the commit's fsync (BENCHMARKS.md, journal).
    pub(super) fn execute(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> rusqlite::Result<usize> {
        self.tx.prepare_cached(sql)?.execute(params)
    }

    /// Appends `event` about `subject` to the chain; its sequence number is
    /// the `journal_seq` of every row this write changes.
    pub(super) fn record(&self, subject: &str, event: &Event) -> rusqlite::Result<i64> {
        chain::append(
            self.tx,
            &self.at,
            event.kind(),
            subject,
            &event.payload_text(),
        )
    }

    /// Marks a tracking row changed under `seq`, for the reconciler.
    pub(super) fn mark(&self, entity: Entity, id: Uuid, seq: i64) -> rusqlite::Result<()> {
        self.execute(
            "INSERT INTO outbox (entity, entity_id, seq, queued_at) VALUES (?1, ?2, ?3, ?4)",
            params![entity.as_str(), id.to_string(), seq, self.at],
        )?;
        Ok(())
    }

    /// A week's outcome changes its collection's counts and status.
    pub(super) fn touch_collection_of_week(&self, week_id: Uuid, seq: i64) -> rusqlite::Result<()> {
        let collection: String = self
            .tx
            .prepare_cached("SELECT collection_id FROM weeks WHERE id = ?1")?
            .query_row([week_id.to_string()], |row| row.get(0))?;
        self.execute(
            "UPDATE collections SET updated_at = ?1, journal_seq = ?2 WHERE id = ?3",
            params![self.at, seq, collection],
        )?;
        let id = Uuid::parse_str(&collection).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?;
        self.mark(Entity::Collection, id, seq)
    }
}

impl Journal {
    /// Runs `apply` in an IMMEDIATE transaction, committed (and with WAL +
    /// `synchronous=FULL`, fsynced) before this returns. Concurrent callers
    /// share one transaction and one fsync (`group`); a failing `apply`
    /// undoes only its own change.
    pub(super) fn change<T>(
        &self,
        apply: impl FnOnce(&Change<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.writer
            .write(|tx| {
                apply(&Change {
                    tx,
                    at: timestamp(Utc::now()),
                })
            })
            .map_err(|e| match e {
                WriteError::Sqlite(e) => self.sqlite(e),
                WriteError::NotCommitted(why) => JournalError::NotCommitted {
                    path: self.path.clone(),
                    why,
                },
            })
    }
}
