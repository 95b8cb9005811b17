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
    Linked {
        seq: event.seq,
        at: &event.at,
        kind: &event.kind,
        subject: &event.subject,
        payload: &event.payload,
        prev_hash: &event.prev_hash,
        hash: &event.hash,
    }
    .fault(expected_seq, prev)
}

/// An event's chained columns borrowed from the row being read: the walks
/// over the whole log check it without copying each column out.
pub(super) struct Linked<'a> {
    pub seq: i64,
    pub at: &'a str,
    pub kind: &'a str,
    pub subject: &'a str,
    pub payload: &'a str,
    pub prev_hash: &'a str,
    pub hash: &'a str,
}

impl Linked<'_> {
    fn fault(&self, expected_seq: i64, prev: &str) -> Option<LinkFault> {
        if self.seq != expected_seq {
            Some(LinkFault::Missing)
        } else if self.prev_hash != prev {
            Some(LinkFault::PrevHash)
        } else if hash(
            self.seq,
            self.at,
            self.kind,
            self.subject,
            self.payload,
            self.prev_hash,
        ) != self.hash
        {
            Some(LinkFault::Content)
        } else {
            None
        }
    }
}

/// The chain checked event by event, in `seq` order: the first break is
/// kept and nothing after it is judged (a break proves nothing past it).
pub(super) struct ChainWalk {
    expected_seq: i64,
    prev: String,
    broken: Option<ChainBreak>,
}

impl Default for ChainWalk {
    fn default() -> Self {
        ChainWalk {
            expected_seq: 1,
            prev: GENESIS.to_owned(),
            broken: None,
        }
    }
}

impl ChainWalk {
    /// Checks the next event; false once the chain is broken.
    pub fn step(&mut self, event: &Linked<'_>) -> bool {
        if self.broken.is_some() {
            return false;
        }
        if let Some(fault) = event.fault(self.expected_seq, &self.prev) {
            let why = match fault {
                LinkFault::Missing => format!("event {} is missing", self.expected_seq),
                LinkFault::PrevHash => "its prev_hash does not match the event before it".into(),
                LinkFault::Content => "its content does not match its hash".into(),
            };
            self.broken = Some(ChainBreak {
                seq: event.seq.min(self.expected_seq),
                why,
            });
            return false;
        }
        self.prev.clear();
        self.prev.push_str(event.hash);
        self.expected_seq += 1;
        true
    }

    /// The first break, or `None` when every event stepped linked true.
    pub fn finish(self) -> Option<ChainBreak> {
        self.broken
    }
}

/// One column of a row as text, borrowed (an error naming the column when
/// it is not text).
fn text_at<'r>(row: &'r rusqlite::Row<'_>, index: usize) -> rusqlite::Result<&'r str> {
    row.get_ref(index)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The chained columns of a row of `SELECT seq, at, kind, subject,
/// payload, prev_hash, hash FROM events`.
pub(super) fn linked<'r>(row: &'r rusqlite::Row<'_>) -> rusqlite::Result<Linked<'r>> {
    Ok(Linked {
        seq: row.get(0)?,
        at: text_at(row, 1)?,
        kind: text_at(row, 2)?,
        subject: text_at(row, 3)?,
        payload: text_at(row, 4)?,
        prev_hash: text_at(row, 5)?,
        hash: text_at(row, 6)?,
    })
}

/// Walks the whole chain; `None` when every event links and hashes true.
pub(super) fn verify(connection: &Connection) -> rusqlite::Result<Option<ChainBreak>> {
    let mut statement = connection.prepare(
        "SELECT seq, at, kind, subject, payload, prev_hash, hash FROM events ORDER BY seq",
    )?;
    let mut rows = statement.query([])?;
    let mut walk = ChainWalk::default();
    while let Some(row) = rows.next()? {
        if !walk.step(&linked(row)?) {
            break;
        }
    }
    Ok(walk.finish())
}
