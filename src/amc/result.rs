//! Fetching an execution's result from its presigned URLs: streamed, gzip
//! detected by magic bytes, several parts joined with the header kept once,
//! and summarized as a row count and a sha256 of the decompressed bytes.
//!
//! Owns no storage of the data: only the summary the journal records.

use std::io::Write;

use flate2::write::GzDecoder;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::ApiError;

/// What the journal keeps of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Data rows, without the header line.
    pub record_count: u64,
    /// sha256 hex of the decompressed, concatenated result.
    pub checksum: String,
}

/// Hashes and counts the decompressed bytes as they stream past.
struct Tally {
    sha: Sha256,
    lines: u64,
    last_byte: Option<u8>,
    /// Set for every part after the first: its header line is dropped.
    skip_header: bool,
}

impl Tally {
    fn take(&mut self, mut data: &[u8]) {
        if self.skip_header {
            match data.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    data = &data[end + 1..];
                    self.skip_header = false;
                }
                None => return,
            }
        }
        if data.is_empty() {
            return;
        }
        self.sha.update(data);
        self.lines += data.iter().filter(|b| **b == b'\n').count() as u64;
        self.last_byte = data.last().copied();
    }

    /// Parts are joined on a line boundary even if one lacks a final newline.
    fn end_part(&mut self) {
        if self.last_byte.is_some_and(|b| b != b'\n') {
            self.take(b"\n");
        }
        self.skip_header = true;
    }

    fn finish(self) -> Summary {
        Summary {
            record_count: self.lines.saturating_sub(1),
            checksum: hex::encode(self.sha.finalize()),
        }
    }
}

/// Adapts the tally to `Write`, so flate2 can push decompressed bytes in.
struct TallyWriter<'t>(&'t mut Tally);

impl Write for TallyWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.take(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One part's destination, chosen by its first bytes.
enum Sink<'t> {
    Plain(TallyWriter<'t>),
    Gzip(Box<GzDecoder<TallyWriter<'t>>>),
}

impl Sink<'_> {
    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(writer) => writer.write_all(data),
            Sink::Gzip(decoder) => decoder.write_all(data),
        }
    }

    /// Checks the gzip trailer, so a truncated download is an error.
    fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Plain(_) => Ok(()),
            Sink::Gzip(decoder) => decoder.finish().map(|_| ()),
        }
    }
}

/// Downloads every part in order. Presigned URLs get no API headers: they
/// refuse a second authentication mechanism.
pub async fn fetch(http: &reqwest::Client, urls: &[String]) -> Result<Summary, ApiError> {
    let mut tally = Tally {
        sha: Sha256::new(),
        lines: 0,
        last_byte: None,
        skip_header: false,
    };
    for (index, url) in urls.iter().enumerate() {
        let part = format!("result part {} of {}", index + 1, urls.len());
        let response = http
            .get(url)
            .send()
            .await
            .map_err(|e| ApiError::Unreachable(format!("{part}: {}", e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ApiError::Refused {
                status: status.as_u16(),
                message: format!("{part} could not be downloaded"),
                retry_after: None,
            });
        }
        let mut stream = response.bytes_stream();
        let read = |chunk: Option<reqwest::Result<bytes::Bytes>>| {
            chunk
                .transpose()
                .map_err(|e| ApiError::OutcomeUnknown(format!("{part}: {}", e.without_url())))
        };
        let broken = |e: std::io::Error| ApiError::Malformed(format!("{part}: bad gzip data: {e}"));
        let first = loop {
            match read(stream.next().await)? {
                Some(chunk) if chunk.is_empty() => continue,
                other => break other,
            }
        };
        if let Some(first) = first {
            let writer = TallyWriter(&mut tally);
            let mut sink = if first.starts_with(&[0x1f, 0x8b]) {
                Sink::Gzip(Box::new(GzDecoder::new(writer)))
            } else {
                Sink::Plain(writer)
            };
            sink.write_all(&first).map_err(broken)?;
            while let Some(chunk) = read(stream.next().await)? {
                sink.write_all(&chunk).map_err(broken)?;
            }
            sink.finish().map_err(broken)?;
        }
        tally.end_part();
    }
    Ok(tally.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally_of(parts: &[&[u8]]) -> Summary {
        let mut tally = Tally {
            sha: Sha256::new(),
            lines: 0,
            last_byte: None,
            skip_header: false,
        };
        for part in parts {
            for chunk in part.chunks(3) {
                tally.take(chunk);
            }
            tally.end_part();
        }
        tally.finish()
    }

    #[test]
    fn parts_are_joined_with_one_header_and_counted_without_it() {
        let joined = tally_of(&[b"h1,h2\na,1\nb,2\n", b"h1,h2\nc,3"]);
        let whole = tally_of(&[b"h1,h2\na,1\nb,2\nc,3\n"]);
        assert_eq!(joined.record_count, 3);
        assert_eq!(joined, whole);
        assert_eq!(
            whole.checksum,
            hex::encode(Sha256::digest(b"h1,h2\na,1\nb,2\nc,3\n"))
        );
    }

    #[test]
    fn a_header_only_result_has_no_rows() {
        assert_eq!(tally_of(&[b"h1,h2\n"]).record_count, 0);
        assert_eq!(tally_of(&[b""]).record_count, 0);
    }
}
