//! The event log's hash chain (invariant I6): appending an event inside the
//! caller's transaction, and walking the chain to find the first break (the
//! link rule, `link_fault`, is also what evidence files are checked by).
//!
//! Canonical form hashed for event `n` (sha256, lowercase hex):
//! `seq \n at \n kind \n subject \n payload \n prev_hash`, where `payload` is
//! the stored JSON text byte for byte and `prev_hash` of the first event is
//! 64 zeros.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::StoredEvent;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where the chain stops proving anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub why: String,
}

pub fn hash(
    seq: i64,
    at: &str,
    kind: &str,
    subject: &str,
    payload: &str,
    prev_hash: &str,
) -> String {
    let canonical = format!("{seq}\n{at}\n{kind}\n{subject}\n{payload}\n{prev_hash}");
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Appends one event and returns its sequence number, which is also the
/// `journal_seq` of every row the same transaction changes.
pub(super) fn append(
    tx: &Connection,
    at: &str,
    kind: &str,
    subject: &str,
    payload: &str,
) -> rusqlite::Result<i64> {
    // Cached statements: every journal write appends an event, and compiling
    // the SQL each time cost more than the commit's own work.
    let last: Option<(i64, String)> = tx
        .prepare_cached("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    let hash = hash(seq, at, kind, subject, payload, &prev_hash);
    tx.prepare_cached(
        "INSERT INTO events (seq, at, kind, subject, payload, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![seq, at, kind, subject, payload, prev_hash, hash])?;
    Ok(seq)
}

/// Why an event does not continue a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFault {
    /// It is not the event the chain expects next: one is missing.
    Missing,
    /// Its `prev_hash` is not the previous event's hash.
    PrevHash,
    /// Its stored hash is not the hash of its canonical form.
    Content,
}

/// Whether `event` continues a chain whose next event is `expected_seq`,
/// linked to `prev`: the one rule the journal's walk and evidence files
/// (`evidence::verify`) share.
pub fn link_fault(event: &StoredEvent, expected_seq: i64, prev: &str) -> Option<LinkFault> {
    if event.seq != expected_seq {
        Some(LinkFault::Missing)
    } else if event.prev_hash != prev {
        Some(LinkFault::PrevHash)
    } else if hash(
        event.seq,
        &event.at,
        &event.kind,
        &event.subject,
        &event.payload,
        &event.prev_hash,
    ) != event.hash
    {
        Some(LinkFault::Content)
    } else {
        None
    }
}

/// Walks the whole chain; `None` when every event links and hashes true.
pub(super) fn verify(connection: &Connection) -> rusqlite::Result<Option<ChainBreak>> {
    let mut statement = connection.prepare(
        "SELECT seq, at, kind, subject, payload, prev_hash, hash FROM events ORDER BY seq",
    )?;
    let mut rows = statement.query([])?;
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_owned();
    while let Some(row) = rows.next()? {
        let event = StoredEvent {
            seq: row.get(0)?,
            at: row.get(1)?,
            kind: row.get(2)?,
            subject: row.get(3)?,
            payload: row.get(4)?,
            prev_hash: row.get(5)?,
            hash: row.get(6)?,
        };
        if let Some(fault) = link_fault(&event, expected_seq, &prev) {
            let why = match fault {
                LinkFault::Missing => format!("event {expected_seq} is missing"),
                LinkFault::PrevHash => "its prev_hash does not match the event before it".into(),
                LinkFault::Content => "its content does not match its hash".into(),
            };
            return Ok(Some(ChainBreak {
                seq: event.seq.min(expected_seq),
                why,
            }));
        }
        prev = event.hash;
        expected_seq += 1;
    }
    Ok(None)
}
