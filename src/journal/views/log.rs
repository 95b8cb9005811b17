//! The event log as stored: streamed in order, its head, single hashes,
//! where a schedule's or a time's events start, the journal's identity, and
//! the walk of the hash chain (I6).
//!
//! Owns reads of the log only; events are streamed, never loaded whole.
//! What an event means is `events`'; judging the chain is the audit's.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::super::chain::{self, ChainBreak};
use super::super::{Journal, JournalError, Result, identity};

/// One event exactly as stored: what the hash chain covers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the chain, from 1 without gaps.
    pub seq: i64,
    /// When the change was journaled (RFC 3339 UTC, milliseconds).
    pub at: String,
    /// What happened, e.g. `attempt.succeeded`.
    pub kind: String,
    /// The row it is about (collection, week or attempt id, or `runner`).
    pub subject: String,
    /// The stored JSON text byte for byte (hashed as text, never re-encoded).
    pub payload: String,
    /// The previous event's hash (64 zeros for event 1).
    pub prev_hash: String,
    /// sha256 of the canonical form (ARCHITECTURE.md).
    pub hash: String,
}

/// Which events to stream.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events after this sequence number (how `--follow` resumes).
    pub after_seq: i64,
    /// Only events at or after this RFC 3339 instant (or date prefix).
    pub since: Option<String>,
    /// Only events of this kind.
    pub kind: Option<String>,
}

/// The last event: what Postgres is shown at each sync.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChainHead {
    /// The last event's number.
    pub seq: i64,
    /// The last event's hash: commits to every event before it.
    pub hash: String,
}

impl Journal {
    /// Streams the events matching `filter` in `seq` order to `each`, one
    /// at a time; returns the last sequence number seen (or `after_seq`).
    /// `each` returning an error stops the walk with it.
    pub fn each_event<E: From<JournalError>>(
        &self,
        filter: &EventFilter,
        mut each: impl FnMut(StoredEvent) -> std::result::Result<(), E>,
    ) -> std::result::Result<i64, E> {
        let connection = self.lock();
        // A walk of the log in seq order, filtering as it streams: no index
        // by kind, whose page every commit would pay for (V7).
        let sql = "SELECT seq, at, kind, subject, payload, prev_hash, hash FROM events
             WHERE seq > ?1 AND (?2 IS NULL OR at >= ?2) AND (?3 IS NULL OR kind = ?3)
             ORDER BY seq";
        let mut statement = connection
            .prepare(sql)
            .map_err(|e| E::from(self.sqlite(e)))?;
        let mut rows = statement
            .query(params![filter.after_seq, filter.since, filter.kind])
            .map_err(|e| E::from(self.sqlite(e)))?;
        let mut last = filter.after_seq;
        while let Some(row) = rows.next().map_err(|e| E::from(self.sqlite(e)))? {
            let event = StoredEvent {
                seq: row.get(0).map_err(|e| E::from(self.sqlite(e)))?,
                at: row.get(1).map_err(|e| E::from(self.sqlite(e)))?,
                kind: row.get(2).map_err(|e| E::from(self.sqlite(e)))?,
                subject: row.get(3).map_err(|e| E::from(self.sqlite(e)))?,
                payload: row.get(4).map_err(|e| E::from(self.sqlite(e)))?,
                prev_hash: row.get(5).map_err(|e| E::from(self.sqlite(e)))?,
                hash: row.get(6).map_err(|e| E::from(self.sqlite(e)))?,
            };
            last = event.seq;
            each(event)?;
        }
        Ok(last)
    }

    /// The last event's sequence number and hash; `None` for an empty log.
    pub fn chain_head(&self) -> Result<Option<ChainHead>> {
        let connection = self.lock();
        connection
            .query_row(
                "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
                [],
                |row| {
                    Ok(ChainHead {
                        seq: row.get(0)?,
                        hash: row.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    /// The stored hash of event `seq`, if it exists.
    pub fn event_hash(&self, seq: i64) -> Result<Option<String>> {
        let connection = self.lock();
        connection
            .query_row("SELECT hash FROM events WHERE seq = ?1", [seq], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    /// The first event of the collection `schedule` names (its creation),
    /// where its evidence starts.
    pub fn first_seq_of(&self, schedule: &str) -> Result<Option<i64>> {
        let collection_id = identity::collection_id(schedule).to_string();
        let connection = self.lock();
        connection
            .query_row(
                "SELECT min(seq) FROM events WHERE subject = ?1",
                [collection_id],
                |row| row.get(0),
            )
            .map_err(|e| self.sqlite(e))
    }

    /// The first event at or after `since` (RFC 3339 text or a date prefix).
    pub fn first_seq_since(&self, since: &str) -> Result<Option<i64>> {
        let connection = self.lock();
        connection
            .query_row(
                "SELECT min(seq) FROM events WHERE at >= ?1",
                [since],
                |row| row.get(0),
            )
            .map_err(|e| self.sqlite(e))
    }

    /// This journal's identity: the key of its chain heads in Postgres.
    pub fn journal_id(&self) -> Result<String> {
        let connection = self.lock();
        connection
            .query_row(
                "SELECT journal_id FROM journal_identity WHERE id = 1",
                [],
                |row| row.get(0),
            )
            .map_err(|e| self.sqlite(e))
    }

    /// The first event where the hash chain breaks, if any (I6).
    pub fn verify_chain(&self) -> Result<Option<ChainBreak>> {
        let connection = self.lock();
        chain::verify(&connection).map_err(|e| self.sqlite(e))
    }
}
