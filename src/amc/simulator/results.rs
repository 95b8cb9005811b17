//! The simulator's result files: the CSV rows of one execution (the same on
//! every download, seeded by its id) and the forms AMC's files come in:
//! several parts each with its header, gzip of one or several members,
//! quoted fields holding commas, quotes and line breaks, files with or
//! without a final line break.
//!
//! Owns the bytes of result files; serving them is `http.rs`'s.

use std::io::Write;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sha2::{Digest, Sha256};

use super::SimConfig;

pub(super) const CSV_HEADER: &str = "week_start,campaign_id,impressions,clicks";

/// The header line of a result under `config`.
fn header(config: &SimConfig) -> String {
    if config.quoted_line_breaks {
        format!("{CSV_HEADER},note")
    } else {
        CSV_HEADER.to_owned()
    }
}

/// The data records of one execution's result, each as CSV text without its
/// line break, the same on every download.
pub(super) fn rows(config: &SimConfig, execution_id: &str, week_start: &str) -> Vec<String> {
    let digest = Sha256::digest(execution_id.as_bytes());
    let salt = digest
        .iter()
        .take(8)
        .fold(0u64, |acc, &b| acc << 8 | u64::from(b));
    let mut rng = StdRng::seed_from_u64(config.seed ^ salt);
    let (low, high) = config.rows_per_result.clone().into_inner();
    let count = rng.random_range(low..=high.max(low));
    (0..count)
        .map(|n| {
            let campaign = rng.random_range(0..1_000_000u32);
            let impressions = rng.random_range(0..100_000u32);
            let clicks = rng.random_range(0..=impressions / 20);
            let row = format!("{week_start},cmp{campaign:06},{impressions},{clicks}");
            if !config.quoted_line_breaks {
                row
            } else if n % 3 == 0 {
                // One record over three lines, with an escaped quote and a comma.
                format!("{row},\"first line\nsecond, \"\"quoted\"\" line\r\nthird\"")
            } else {
                format!("{row},plain")
            }
        })
        .collect()
}

/// The result as one CSV, header once: what the joined parts amount to.
pub(super) fn whole(config: &SimConfig, execution_id: &str, week_start: &str) -> Vec<u8> {
    let rows = rows(config, execution_id, week_start);
    csv_file(config, &rows).into_bytes()
}

/// One file: the header, then `rows`, each record ended by a line break
/// except, when `trailing_newline` is off, the last.
fn csv_file(config: &SimConfig, rows: &[String]) -> String {
    let mut csv = header(config);
    for row in rows {
        csv.push('\n');
        csv.push_str(row);
    }
    if config.trailing_newline {
        csv.push('\n');
    }
    csv
}

/// Part `part` of the result (its share of the rows under its own header),
/// gzipped as configured, or `None` if there is no such part.
pub(super) fn part_file(
    config: &SimConfig,
    execution_id: &str,
    week_start: &str,
    part: u32,
) -> Option<Vec<u8>> {
    let parts = config.result_parts.max(1);
    if part >= parts {
        return None;
    }
    let rows = rows(config, execution_id, week_start);
    let (n, part, parts) = (rows.len(), part as usize, parts as usize);
    let csv = csv_file(config, &rows[n * part / parts..n * (part + 1) / parts]).into_bytes();
    if !config.gzip_results {
        return Some(csv);
    }
    // Several members, as `cat a.gz b.gz` or a streaming writer leaves them.
    let members = config.gzip_members.max(1) as usize;
    let mut out = Vec::new();
    for m in 0..members {
        let piece = &csv[csv.len() * m / members..csv.len() * (m + 1) / members];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(piece).ok()?;
        out.extend(gz.finish().ok()?);
    }
    Some(out)
}
