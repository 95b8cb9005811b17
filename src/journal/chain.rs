//! The event log's hash chain (invariant I6): appending an event inside the
//! caller's transaction, and walking the chain to find the first break.
//!
//! Canonical form hashed for event `n` (sha256, lowercase hex):
//! `seq \n at \n kind \n subject \n payload \n prev_hash`, where `payload` is
//! the stored JSON text byte for byte and `prev_hash` of the first event is
//! 64 zeros.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sha2::{Digest, Sha256};

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
pub fn append(
    tx: &Transaction<'_>,
    at: &str,
    kind: &str,
    subject: &str,
    payload: &serde_json::Value,
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
    let payload = payload.to_string();
    let hash = hash(seq, at, kind, subject, &payload, &prev_hash);
    tx.prepare_cached(
        "INSERT INTO events (seq, at, kind, subject, payload, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![seq, at, kind, subject, payload, prev_hash, hash])?;
    Ok(seq)
}

/// Walks the whole chain; `None` when every event links and hashes true.
pub fn verify(connection: &Connection) -> rusqlite::Result<Option<ChainBreak>> {
    let mut statement = connection.prepare(
        "SELECT seq, at, kind, subject, payload, prev_hash, hash FROM events ORDER BY seq",
    )?;
    let mut rows = statement.query([])?;
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_owned();
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let (at, kind, subject, payload, prev_hash, stored): (
            String,
            String,
            String,
            String,
            String,
            String,
        ) = (
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
        );
        let why = if seq != expected_seq {
            Some(format!("event {expected_seq} is missing"))
        } else if prev_hash != prev {
            Some("its prev_hash does not match the event before it".to_owned())
        } else if hash(seq, &at, &kind, &subject, &payload, &prev_hash) != stored {
            Some("its content does not match its hash".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            return Ok(Some(ChainBreak {
                seq: seq.min(expected_seq),
                why,
            }));
        }
        prev = stored;
        expected_seq += 1;
    }
    Ok(None)
}
