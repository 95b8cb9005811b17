//! Evidence files: a self-contained, plain-text copy of a contiguous run of
//! the event log with its hash chain and chain head, which an auditor checks
//! on any machine with `chronicle audit --evidence FILE` (or a script of their
//! own: ARCHITECTURE.md documents the canonical form).
//!
//! Format (NDJSON, UTF-8): line 1 is the header, every further line one event
//! exactly as stored (`payload` is the stored JSON text as a string, byte for
//! byte). The header's `content_sha256` covers every byte after the header's
//! newline; its `prev_hash` is the hash of the event before `first_seq` (64
//! zeros when the file starts at event 1); its `head` is the last event.
//!
//! Owns writing and checking the file. Reading events is the journal's.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::journal::{
    ChainHead, EventFilter, GENESIS, Journal, JournalError, LinkFault, StoredEvent, link_fault,
};

pub const FORMAT: &str = "chronicle-evidence";
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("evidence file {}: {why}", path.display())]
    Io { path: PathBuf, why: String },
    #[error("{0}")]
    Nothing(String),
}

/// Line 1 of an evidence file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    /// Always `chronicle-evidence`: what the file is.
    pub format: String,
    /// Bumped on any change of the layout or the canonical form.
    pub version: u32,
    /// The journal the events come from (its Postgres chain-head key).
    pub journal_id: String,
    /// When the file was written.
    pub exported_at: String,
    /// What the export was asked for (the range still runs to the head: the
    /// chain proves only a contiguous run).
    pub schedule: Option<String>,
    /// The `--since` asked for, in the journal's time form.
    pub since: Option<String>,
    /// The first event in the file.
    pub first_seq: i64,
    /// Hash of event `first_seq - 1`: the anchor of the first event's link.
    pub prev_hash: String,
    /// The last event in the file: compare it with a head recorded elsewhere
    /// (Postgres `chronicle.chain_heads`, an earlier export).
    pub head: ChainHead,
    /// How many event lines follow the header.
    pub events: u64,
    /// sha256 (lowercase hex) of every byte after the header line.
    pub content_sha256: String,
}

/// The result of checking a file: `problems` empty means it verifies.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The file checked, as given.
    pub file: String,
    /// The header, when line 1 parsed as one.
    pub header: Option<Header>,
    /// Events that verified before the first problem.
    pub events_checked: u64,
    /// Every reason the file does not verify; empty means it does.
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> EvidenceError + '_ {
    move |e| EvidenceError::Io {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}

/// Writes the events from the schedule's first event (or the first at or
/// after `since`, whichever is later) to the chain head into `out`.
pub fn export(
    journal: &Journal,
    out: &Path,
    schedule: Option<&str>,
    since: Option<&str>,
    progress: &indicatif::ProgressBar,
) -> Result<Header, EvidenceError> {
    let mut first = 1;
    if let Some(name) = schedule {
        first = journal.first_seq_of(name)?.ok_or_else(|| {
            EvidenceError::Nothing(format!("the journal holds no collection named `{name}`"))
        })?;
    }
    if let Some(since) = since {
        let at = journal.first_seq_since(since)?.ok_or_else(|| {
            EvidenceError::Nothing(format!("the journal holds no event at or after {since}"))
        })?;
        first = first.max(at);
    }
    let head = journal
        .chain_head()?
        .ok_or_else(|| EvidenceError::Nothing("the journal holds no events yet".into()))?;
    let prev_hash = if first == 1 {
        GENESIS.to_owned()
    } else {
        journal.event_hash(first - 1)?.ok_or_else(|| {
            EvidenceError::Nothing(format!(
                "event {} is missing from the journal: run `chronicle audit`",
                first - 1
            ))
        })?
    };
    progress.set_length(u64::try_from(head.seq - first + 1).unwrap_or(0));
    // The body goes to a temporary file first: the header carries its hash.
    let mut body = tempfile::tempfile().map_err(io(out))?;
    let mut digest = Sha256::new();
    let mut count = 0u64;
    let mut last = None;
    {
        let mut writer = BufWriter::new(&mut body);
        let filter = EventFilter {
            after_seq: first - 1,
            ..EventFilter::default()
        };
        journal.each_event(&filter, |event: StoredEvent| -> Result<(), EvidenceError> {
            if event.seq > head.seq {
                return Ok(());
            }
            let mut line = serde_json::to_vec(&event).expect("events always serialize");
            line.push(b'\n');
            digest.update(&line);
            writer.write_all(&line).map_err(io(out))?;
            count += 1;
            last = Some(ChainHead {
                seq: event.seq,
                hash: event.hash,
            });
            progress.inc(1);
            Ok(())
        })?;
        writer.flush().map_err(io(out))?;
    }
    let header = Header {
        format: FORMAT.to_owned(),
        version: VERSION,
        journal_id: journal.journal_id()?,
        exported_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        schedule: schedule.map(str::to_owned),
        since: since.map(str::to_owned),
        first_seq: first,
        prev_hash,
        head: last.unwrap_or(head),
        events: count,
        content_sha256: hex::encode(digest.finalize()),
    };
    let mut file = BufWriter::new(crate::files::create(out).map_err(io(out))?);
    serde_json::to_writer(&mut file, &header).expect("headers always serialize");
    file.write_all(b"\n").map_err(io(out))?;
    body.rewind().map_err(io(out))?;
    std::io::copy(&mut body, &mut file).map_err(io(out))?;
    file.into_inner()
        .map_err(|e| io(out)(e.into_error()))?
        .sync_all()
        .map_err(io(out))?;
    Ok(header)
}

/// Checks a file without any journal or database: the header's content
/// hash, every event's link and hash, contiguity, and the head. With
/// `expected_head` (a head recorded elsewhere, e.g. in Postgres, possibly
/// before later events), one verified event must carry that hash.
pub fn verify(path: &Path, expected_head: Option<&str>) -> Result<Verdict, EvidenceError> {
    let mut reader = BufReader::new(File::open(path).map_err(io(path))?);
    let mut verdict = Verdict {
        file: path.display().to_string(),
        header: None,
        events_checked: 0,
        problems: Vec::new(),
    };
    let mut first_line = Vec::new();
    reader
        .read_until(b'\n', &mut first_line)
        .map_err(io(path))?;
    let header: Header = match serde_json::from_slice(&first_line) {
        Ok(header) => header,
        Err(e) => {
            verdict
                .problems
                .push(format!("line 1 is not an evidence header: {e}"));
            return Ok(verdict);
        }
    };
    if header.format != FORMAT || header.version != VERSION {
        verdict.problems.push(format!(
            "header says format `{}` version {}; this chronicle reads `{FORMAT}` version {VERSION}",
            header.format, header.version
        ));
        verdict.header = Some(header);
        return Ok(verdict);
    }
    // Streamed: a file of a million events is checked in constant memory.
    let mut digest = Sha256::new();
    if header.first_seq == 1 && header.prev_hash != GENESIS {
        verdict.problems.push(format!(
            "the file starts at event 1 but anchors it to {} instead of the genesis hash",
            header.prev_hash
        ));
    }
    let mut expected_seq = header.first_seq;
    let mut expected_found = false;
    let mut prev = header.prev_hash.clone();
    let mut last: Option<ChainHead> = None;
    let mut broken = false;
    let mut line = Vec::new();
    let mut line_no = 1;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io(path))? == 0 {
            break;
        }
        digest.update(&line);
        line_no += 1;
        if broken {
            continue;
        }
        let why = match serde_json::from_slice::<StoredEvent>(&line) {
            Err(e) => Some(format!("line {line_no} is not an event: {e}")),
            Ok(event) => {
                let why = check_event(&event, expected_seq, &prev, line_no);
                if why.is_none() {
                    verdict.events_checked += 1;
                    expected_found |= expected_head == Some(event.hash.as_str());
                    prev = event.hash.clone();
                    expected_seq += 1;
                    last = Some(ChainHead {
                        seq: event.seq,
                        hash: event.hash,
                    });
                }
                why
            }
        };
        if let Some(why) = why {
            verdict.problems.push(why);
            broken = true;
        }
    }
    let actual = hex::encode(digest.finalize());
    if actual != header.content_sha256 {
        verdict.problems.push(format!(
            "the events' sha256 is {actual}, the header says {}: the file was changed after export",
            header.content_sha256
        ));
    }
    if verdict.problems.is_empty() {
        if verdict.events_checked != header.events {
            verdict.problems.push(format!(
                "the header announces {} events, the file holds {}",
                header.events, verdict.events_checked
            ));
        }
        if last.as_ref() != Some(&header.head) {
            verdict.problems.push(format!(
                "the header's head (event {} {}) is not the last event of the file",
                header.head.seq, header.head.hash
            ));
        }
    }
    if let Some(expected) = expected_head
        && !expected_found
    {
        verdict.problems.push(format!(
            "no verified event of the file has the hash you expect ({expected})"
        ));
    }
    verdict.header = Some(header);
    Ok(verdict)
}

/// Why `event` does not continue the chain, if it does not.
fn check_event(
    event: &StoredEvent,
    expected_seq: i64,
    prev: &str,
    line_no: usize,
) -> Option<String> {
    Some(match link_fault(event, expected_seq, prev)? {
        LinkFault::Missing => format!(
            "event {expected_seq} is missing (line {line_no} holds event {})",
            event.seq
        ),
        LinkFault::PrevHash => format!(
            "event {} (line {line_no}): its prev_hash does not match the event before it",
            event.seq
        ),
        LinkFault::Content => format!(
            "event {} (line {line_no}): its content does not match its hash",
            event.seq
        ),
    })
}
