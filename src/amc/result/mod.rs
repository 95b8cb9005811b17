//! Fetching an execution's result from its presigned URLs: streamed, gzip
//! detected by magic bytes (several members read as one stream), parts
//! joined with the header kept once, and summarized in the same single pass
//! as a record count, a sha256, the columns, a sample of rows and the
//! numeric columns' totals and averages (`records`).
//!
//! What the checksum covers: the decompressed bytes of the first part that
//! has any, byte for byte, then of each later part without its header
//! record, byte for byte; nothing is added, except one line feed before a
//! later part's records when the bytes so far do not end in a line break
//! (without it two records would run together). A single part is
//! checksummed exactly as AMC sent it.
//!
//! Owns the optional copy kept under `amc.results_dir` (written to a
//! `.part` file, renamed only once complete; the same bytes as the
//! checksum) and the size limit; the journal records only the summary.

mod records;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use csv_core::{ReadRecordResult, Reader};
use flate2::write::MultiGzDecoder;
use futures_util::StreamExt;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::ApiError;
pub use records::{ColumnType, ResultColumn};
use records::{RecordTooLarge, Records};

/// What the journal and the dashboards keep of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// CSV records after the header (RFC 4180: a quoted line break does
    /// not start a record); `result_total_rows` too.
    pub record_count: u64,
    /// sha256 hex of the decompressed, joined result (see the module
    /// comment for exactly which bytes).
    pub checksum: String,
    /// `result_columns`: one per header column, with its type word.
    pub result_columns: Vec<ResultColumn>,
    /// `result_rows` as JSON text, ready for the jsonb column: an array of
    /// the first records (at most `FetchOptions::rows_limit`) as objects
    /// keyed by column name. Text, not values: held compactly until then.
    pub result_rows_json: String,
    /// `result_sample_size`: how many rows `result_rows_json` holds.
    pub result_sample_size: usize,
    /// `summary_stats`: `total_<c>` and `avg_<c>` for each numeric column.
    pub summary_stats: Map<String, Value>,
}

/// Why a result could not be summarized.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Fetching failed; asking again later may work.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// AMC listed no result file (`{"downloadUrls":[]}`): the files are
    /// not written yet. Never read as an empty result.
    #[error("AMC listed no result files")]
    NoFiles,
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
    /// `postgres.result_rows_limit`: rows kept for `result_rows` (0: none).
    pub rows_limit: usize,
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

/// Hashes, counts and reads the decompressed bytes as they stream past, and
/// copies them to the kept file when there is one.
struct Tally {
    /// sha256 of the joined, decompressed result: the journal's checksum.
    sha: Sha256,
    /// The records, read in the same pass.
    records: Records,
    /// Decompressed bytes so far, checked against `max_bytes`.
    bytes: u64,
    /// `amc.max_result_bytes`.
    max_bytes: u64,
    /// The last byte kept, so a later part starts on a record of its own.
    last_byte: Option<u8>,
    /// While a later part's header record is being dropped: its own reader.
    header: Option<Reader>,
    /// The header just dropped ended in `\r`: its `\n` goes with it.
    after_cr: bool,
    /// This part has kept bytes (a line feed is put before its first).
    part_started: bool,
    /// The kept copy under `amc.results_dir`, if the user wants the data.
    copy: Option<BufWriter<File>>,
}

impl Tally {
    fn new(max_bytes: u64, rows_limit: usize, copy: Option<BufWriter<File>>) -> Tally {
        Tally {
            sha: Sha256::new(),
            records: Records::new(rows_limit),
            bytes: 0,
            max_bytes,
            last_byte: None,
            header: None,
            after_cr: false,
            part_started: false,
            copy,
        }
    }

    /// Later parts drop their header only once one has been kept: after an
    /// empty first part, the next part's header is the result's header.
    fn start_part(&mut self) {
        self.header = self.last_byte.is_some().then(Reader::new);
        self.after_cr = false;
        self.part_started = false;
    }

    fn take(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        // csv-core reads an empty input as the end of the file.
        while !data.is_empty() {
            let Some(reader) = &mut self.header else {
                break;
            };
            let (mut scratch, mut ends) = ([0u8; 1024], [0usize; 64]);
            let (result, read, _, _) = reader.read_record(data, &mut scratch, &mut ends);
            let ended_with_cr = read > 0 && data[read - 1] == b'\r';
            data = &data[read..];
            if result == ReadRecordResult::Record {
                // `\r\n`: the `\n` still belongs to the header's end.
                self.after_cr = ended_with_cr;
                self.header = None;
            }
        }
        if self.after_cr && !data.is_empty() {
            if data[0] == b'\n' {
                data = &data[1..];
            }
            self.after_cr = false;
        }
        if data.is_empty() {
            return Ok(());
        }
        if !self.part_started {
            self.part_started = true;
            if self.last_byte.is_some_and(|b| b != b'\n' && b != b'\r') {
                self.keep(b"\n")?;
            }
        }
        self.keep(data)
    }

    fn keep(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.bytes += data.len() as u64;
        if self.bytes > self.max_bytes {
            return Err(std::io::Error::other(OverLimit));
        }
        self.sha.update(data);
        self.records.feed(data).map_err(std::io::Error::other)?;
        self.last_byte = data.last().copied();
        if let Some(copy) = &mut self.copy {
            copy.write_all(data)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<Summary, RecordTooLarge> {
        let records = self.records.finish()?;
        Ok(Summary {
            record_count: records.record_count,
            checksum: hex::encode(self.sha.finalize()),
            result_columns: records.columns,
            result_rows_json: records.rows_json,
            result_sample_size: records.rows,
            summary_stats: records.stats,
        })
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
    /// Every member of the file: concatenating writers produce several.
    Gzip(Box<MultiGzDecoder<TallyWriter<'t>>>),
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
        let mut tally = Tally::new(options.max_bytes, options.rows_limit, None);
        summarize(http, urls, &mut tally).await?;
        return finished(tally);
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
    let mut tally = Tally::new(
        options.max_bytes,
        options.rows_limit,
        Some(BufWriter::new(file)),
    );
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
            finished(tally)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn finished(tally: Tally) -> Result<Summary, FetchError> {
    tally
        .finish()
        .map_err(|e| ApiError::Malformed(format!("result: {e}")).into())
}

async fn summarize(
    http: &reqwest::Client,
    urls: &[String],
    tally: &mut Tally,
) -> Result<(), FetchError> {
    // No file is not an empty result: AMC writes at least a header.
    if urls.is_empty() {
        return Err(FetchError::NoFiles);
    }
    let limit = tally.max_bytes;
    for (index, url) in urls.iter().enumerate() {
        tally.start_part();
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
        let broken = |e: std::io::Error| match e.get_ref() {
            Some(inner) if inner.is::<OverLimit>() => FetchError::TooLarge { limit },
            Some(inner) if inner.is::<RecordTooLarge>() => {
                ApiError::Malformed(format!("{part}: {inner}")).into()
            }
            _ => ApiError::Malformed(format!("{part}: bad gzip data: {e}")).into(),
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
                Sink::Gzip(Box::new(MultiGzDecoder::new(writer)))
            } else {
                Sink::Plain(writer)
            };
            sink.write_all(&first).map_err(broken)?;
            while let Some(chunk) = read(stream.next().await)? {
                sink.write_all(&chunk).map_err(broken)?;
            }
            sink.finish().map_err(broken)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally_of(parts: &[&[u8]]) -> Summary {
        let mut tally = Tally::new(u64::MAX, 100, None);
        for part in parts {
            tally.start_part();
            for chunk in part.chunks(3) {
                tally.take(chunk).unwrap();
            }
        }
        tally.finish().unwrap()
    }

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn parts_are_joined_with_one_header_and_counted_without_it() {
        let joined = tally_of(&[b"h1,h2\na,1\nb,2\n", b"h1,h2\nc,3\n"]);
        let whole = tally_of(&[b"h1,h2\na,1\nb,2\nc,3\n"]);
        assert_eq!(joined.record_count, 3);
        assert_eq!(joined, whole);
        assert_eq!(whole.checksum, sha(b"h1,h2\na,1\nb,2\nc,3\n"));
    }

    #[test]
    fn a_last_part_without_a_line_break_is_checksummed_as_sent() {
        assert_eq!(tally_of(&[b"h\na\nb"]).checksum, sha(b"h\na\nb"));
        // Between parts one line feed keeps two records apart; none is added at the end.
        let joined = tally_of(&[b"h\na", b"h\nb"]);
        assert_eq!((joined.record_count, joined.checksum), (2, sha(b"h\na\nb")));
    }

    #[test]
    fn a_later_header_is_dropped_as_a_record_crlf_and_quotes_included() {
        let joined = tally_of(&[b"\"h\n1\",h2\r\na,1\r\n", b"\"h\n1\",h2\r\nb,2\r\n"]);
        assert_eq!(joined.record_count, 2);
        assert_eq!(joined.checksum, sha(b"\"h\n1\",h2\r\na,1\r\nb,2\r\n"));
        assert_eq!(joined.result_columns[0].name, "h\n1");
    }

    #[test]
    fn a_result_over_the_limit_is_refused_as_it_streams() {
        let mut tally = Tally::new(10, 0, None);
        tally.start_part();
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
