//! Fetching an execution's result from its presigned URLs: streamed, gzip
//! detected by magic bytes, several parts joined with the header kept once,
//! and summarized as a row count and a sha256 of the decompressed bytes.
//!
//! Owns the optional copy kept under `amc.results_dir` (written to a
//! `.part` file, renamed only once complete) and the size limit; the journal
//! records only the summary.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

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

/// Why a result could not be summarized.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Fetching failed; asking again later may work.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Asking again gives the same bytes: the attempt has failed.
    #[error("the result is larger than amc.max_result_bytes ({limit} bytes decompressed)")]
    TooLarge {
        /// The configured limit, named in the message.
        limit: u64,
    },
    /// The copy under `amc.results_dir` could not be written.
    #[error("cannot keep the result as {}: {source}", path.display())]
    Keep {
        /// The file that could not be written or renamed.
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to do with the bytes besides summarizing them.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Decompressed bytes allowed before the download is stopped.
    pub max_bytes: u64,
    /// Where the joined CSV is kept, if the user asked for the data.
    pub keep_as: Option<PathBuf>,
}

/// The size check's io error, told apart from a broken gzip stream.
#[derive(Debug)]
struct OverLimit;

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("result over the size limit")
    }
}

impl std::error::Error for OverLimit {}

/// Hashes and counts the decompressed bytes as they stream past, and copies
/// them to the kept file when there is one.
struct Tally {
    /// sha256 of the joined, decompressed result: the journal's checksum.
    sha: Sha256,
    /// Newlines seen; the header line is subtracted at the end.
    lines: u64,
    /// Decompressed bytes so far, checked against `max_bytes`.
    bytes: u64,
    /// `amc.max_result_bytes`.
    max_bytes: u64,
    /// Whether a part ended mid-line, so the next starts on a new one.
    last_byte: Option<u8>,
    /// Set for every part after the first: its header line is dropped.
    skip_header: bool,
    /// The kept copy under `amc.results_dir`, if the user wants the data.
    copy: Option<BufWriter<File>>,
}

impl Tally {
    fn new(max_bytes: u64, copy: Option<BufWriter<File>>) -> Tally {
        Tally {
            sha: Sha256::new(),
            lines: 0,
            bytes: 0,
            max_bytes,
            last_byte: None,
            skip_header: false,
            copy,
        }
    }

    fn take(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        if self.skip_header {
            match data.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    data = &data[end + 1..];
                    self.skip_header = false;
                }
                None => return Ok(()),
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        self.bytes += data.len() as u64;
        if self.bytes > self.max_bytes {
            return Err(std::io::Error::other(OverLimit));
        }
        self.sha.update(data);
        self.lines += data.iter().filter(|b| **b == b'\n').count() as u64;
        self.last_byte = data.last().copied();
        if let Some(copy) = &mut self.copy {
            copy.write_all(data)?;
        }
        Ok(())
    }

    /// Parts are joined on a line boundary even if one lacks a final newline.
    /// Later parts drop their header only once one has been kept: after an
    /// empty first part, the next part's header is the result's header.
    fn end_part(&mut self) -> std::io::Result<()> {
        if self.last_byte.is_some_and(|b| b != b'\n') {
            self.take(b"\n")?;
        }
        self.skip_header = self.last_byte.is_some();
        Ok(())
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
        self.0.take(buf)?;
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
pub async fn fetch(
    http: &reqwest::Client,
    urls: &[String],
    options: &FetchOptions,
) -> Result<Summary, FetchError> {
    let Some(keep_as) = &options.keep_as else {
        let mut tally = Tally::new(options.max_bytes, None);
        summarize(http, urls, &mut tally).await?;
        return Ok(tally.finish());
    };
    let partial = keep_as.with_extension("csv.part");
    let keep_error = |path: &Path, source| FetchError::Keep {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = keep_as.parent() {
        crate::files::create_dir_all(dir).map_err(|e| keep_error(dir, e))?;
    }
    let file = crate::files::create(&partial).map_err(|e| keep_error(&partial, e))?;
    let mut tally = Tally::new(options.max_bytes, Some(BufWriter::new(file)));
    let summarized = summarize(http, urls, &mut tally).await.and_then(|()| {
        let copy = tally.copy.take().map(BufWriter::into_inner);
        copy.transpose()
            .map_err(|e| keep_error(&partial, e.into_error()))?
            .map(|file| file.sync_all())
            .transpose()
            .map_err(|e| keep_error(&partial, e))?;
        Ok(())
    });
    match summarized {
        Ok(()) => {
            std::fs::rename(&partial, keep_as).map_err(|e| keep_error(keep_as, e))?;
            Ok(tally.finish())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

async fn summarize(
    http: &reqwest::Client,
    urls: &[String],
    tally: &mut Tally,
) -> Result<(), FetchError> {
    let limit = tally.max_bytes;
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
            }
            .into());
        }
        let mut stream = response.bytes_stream();
        let read = |chunk: Option<reqwest::Result<bytes::Bytes>>| {
            chunk
                .transpose()
                .map_err(|e| ApiError::OutcomeUnknown(format!("{part}: {}", e.without_url())))
        };
        let broken = |e: std::io::Error| {
            if e.get_ref().is_some_and(|inner| inner.is::<OverLimit>()) {
                FetchError::TooLarge { limit }
            } else {
                ApiError::Malformed(format!("{part}: bad gzip data: {e}")).into()
            }
        };
        let first = loop {
            match read(stream.next().await)? {
                Some(chunk) if chunk.is_empty() => continue,
                other => break other,
            }
        };
        if let Some(first) = first {
            let writer = TallyWriter(&mut *tally);
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
        tally.end_part().map_err(broken)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally_of(parts: &[&[u8]]) -> Summary {
        let mut tally = Tally::new(u64::MAX, None);
        for part in parts {
            for chunk in part.chunks(3) {
                tally.take(chunk).unwrap();
            }
            tally.end_part().unwrap();
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
    fn a_result_over_the_limit_is_refused_as_it_streams() {
        let mut tally = Tally::new(10, None);
        tally.take(b"h1,h2\n").unwrap();
        let error = tally.take(b"a,1\nb,2\n").unwrap_err();
        assert!(error.get_ref().unwrap().is::<OverLimit>());
    }

    #[test]
    fn an_empty_first_part_does_not_cost_the_next_part_its_header() {
        let after_empty = tally_of(&[b"", b"h1,h2\na,1\n", b"h1,h2\nb,2\n"]);
        assert_eq!(after_empty, tally_of(&[b"h1,h2\na,1\nb,2\n"]));
        assert_eq!(after_empty.record_count, 2);
    }

    #[test]
    fn a_header_only_result_has_no_rows() {
        assert_eq!(tally_of(&[b"h1,h2\n"]).record_count, 0);
        assert_eq!(tally_of(&[b""]).record_count, 0);
    }
}
