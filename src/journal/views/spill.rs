//! The audit's grouped copy of the event log: the first pass over the log
//! (in `seq` order) appends each event's replayed columns to its group,
//! and the walk then reads the groups back one at a time. The copy is an
//! unlinked owner-only temporary file; at most `BUFFERED` bytes of it are
//! in memory while it is written, one chunk while it is read.
//!
//! Fetching each event back from the journal by rowid instead read a 4 KB
//! page of the log for every event (the log interleaves the collections),
//! eleven times the pages of one scan; the copy is written and read once,
//! in large sequential chunks.
//!
//! Owns the file and its record format; which group an event goes to is
//! the walk's (`state`).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

/// Bytes held before every group's buffer is written out as one chunk.
const BUFFERED: usize = 8 << 20;

/// Events appended by group, then read back group by group.
pub(super) struct Spill {
    file: File,
    /// Each group's records not yet written.
    buffers: Vec<Vec<u8>>,
    /// Each group's chunks in the file: `(offset, length)`, in `seq` order.
    chunks: Vec<Vec<(u64, usize)>>,
    buffered: usize,
    end: u64,
}

/// One event as the replay reads it.
pub(super) struct Spilled<'a> {
    pub seq: i64,
    pub kind: &'a str,
    pub subject: &'a str,
    pub payload: &'a str,
}

impl Spill {
    pub fn new() -> io::Result<Self> {
        Ok(Spill {
            file: tempfile::tempfile()?,
            buffers: Vec::new(),
            chunks: Vec::new(),
            buffered: 0,
            end: 0,
        })
    }

    /// Appends `event` to `group` (events of one group in `seq` order).
    pub fn push(&mut self, group: usize, event: &Spilled<'_>) -> io::Result<()> {
        if group >= self.buffers.len() {
            self.buffers.resize_with(group + 1, Vec::new);
            self.chunks.resize_with(group + 1, Vec::new);
        }
        let buffer = &mut self.buffers[group];
        let before = buffer.len();
        buffer.extend_from_slice(&event.seq.to_le_bytes());
        for text in [event.kind, event.subject, event.payload] {
            let length = u32::try_from(text.len()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, "an event column over 4 GB")
            })?;
            buffer.extend_from_slice(&length.to_le_bytes());
            buffer.extend_from_slice(text.as_bytes());
        }
        self.buffered += buffer.len() - before;
        if self.buffered >= BUFFERED {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every group's buffer as one chunk and frees the buffers.
    fn flush(&mut self) -> io::Result<()> {
        for (buffer, chunks) in self.buffers.iter_mut().zip(&mut self.chunks) {
            if buffer.is_empty() {
                continue;
            }
            let buffer = std::mem::take(buffer);
            self.file.write_all(&buffer)?;
            chunks.push((self.end, buffer.len()));
            self.end += buffer.len() as u64;
        }
        self.buffered = 0;
        Ok(())
    }

    /// Ends the writing: what is still buffered goes to the file.
    pub fn finish(&mut self) -> io::Result<()> {
        self.flush()
    }

    /// Reads `group`'s events back in `seq` order, one chunk in memory.
    pub fn each(
        &self,
        group: usize,
        mut each: impl FnMut(&Spilled<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut chunk = Vec::new();
        for &(offset, length) in self.chunks.get(group).into_iter().flatten() {
            chunk.resize(length, 0);
            self.file.read_exact_at(&mut chunk, offset)?;
            let mut rest = chunk.as_slice();
            while !rest.is_empty() {
                let seq = i64::from_le_bytes(take(&mut rest, 8)?.try_into().map_err(corrupt)?);
                let mut text = || -> io::Result<&str> {
                    let length =
                        u32::from_le_bytes(take(&mut rest, 4)?.try_into().map_err(corrupt)?);
                    std::str::from_utf8(take(&mut rest, length as usize)?).map_err(corrupt)
                };
                let (kind, subject, payload) = (text()?, text()?, text()?);
                each(&Spilled {
                    seq,
                    kind,
                    subject,
                    payload,
                })?;
            }
        }
        Ok(())
    }
}

/// The next `n` bytes of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> io::Result<&'a [u8]> {
    if rest.len() < n {
        return Err(corrupt("a record cut short"));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn corrupt(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the audit's temporary copy of the log reads back damaged: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_read_back_in_the_order_written_across_chunks() {
        let mut spill = Spill::new().unwrap();
        // Enough to flush several times, so groups span chunks.
        let payload = "x".repeat(1000);
        let events = 3 * BUFFERED / 1000;
        for seq in 0..events as i64 {
            let event = Spilled {
                seq,
                kind: "week.added",
                subject: if seq % 3 == 0 { "é" } else { "b" },
                payload: &payload[..(seq % 1000) as usize],
            };
            spill.push((seq % 3) as usize, &event).unwrap();
        }
        spill.finish().unwrap();
        assert!(
            spill.chunks[0].len() > 1,
            "one chunk only: the test proves nothing"
        );
        for group in 0..3 {
            let mut seen = Vec::new();
            spill
                .each(group, |e| {
                    assert_eq!(e.payload.len() as i64, e.seq % 1000);
                    assert_eq!(e.subject, if e.seq % 3 == 0 { "é" } else { "b" });
                    seen.push(e.seq);
                    Ok(())
                })
                .unwrap();
            let expected: Vec<i64> = (0..events as i64)
                .filter(|s| s % 3 == group as i64)
                .collect();
            assert_eq!(seen, expected);
        }
        let mut none = 0;
        spill
            .each(7, |_| {
                none += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(none, 0);
    }
}
