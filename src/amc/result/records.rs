//! The records of a result as they stream past, read with csv-core (RFC
//! 4180: a quoted field may hold commas, quotes and line breaks, so a record
//! is not a line): the count, the header's columns and their types, the
//! first rows for the dashboards, and the sums behind `summary_stats`.
//! Memory holds one record and the row sample, however long the result.
//!
//! Owns reading CSV and the application's rules for columns, rows and stats.
//! It does not see parts, gzip or checksums (`mod.rs` feeds it the joined,
//! decompressed bytes).
//!
//! The rules mirror the application chronicle replaces (repository
//! neverMEH/amazon-helper):
//! - `amc_manager/services/amc_api_client.py` (`download_and_parse_csv`)
//!   reads results with Python's `csv.reader`, takes the first record as the
//!   header and writes `result_columns` as `{"name": header, "type": ..}`,
//!   one per header column; it writes `"string"` for every column. chronicle
//!   writes `"string"` too, except for columns every value of which is a
//!   number, which get `"integer"` or `"float"`: the words the app's own
//!   `frontend/src/components/workflows/ResultsVisualization.tsx` takes as
//!   numeric (`integer`, `numeric`, `float`, `double`).
//! - A value is numeric when Python's `float(value)` takes it
//!   (`amc_manager/services/data_analysis_service.py`, `_is_numeric`):
//!   surrounding spaces allowed, sign, decimals, exponent; NaN and infinity
//!   are left out because JSON cannot hold them. An empty value is missing,
//!   not a number and not text.
//! - `result_rows` are row objects keyed by column name (`data_objects`
//!   there), a missing trailing field `null`. Numbers are JSON numbers,
//!   because `report_dashboard_service.py` (`_extract_metrics_from_results`)
//!   sums only values that are `int`/`float`.
//! - `summary_stats` follows that same function: `total_<c>` is the sum of a
//!   numeric column over every record, `avg_<c>` that total divided by the
//!   number of records (all of them, as it divides by `len(result_rows)`).

use csv_core::{ReadRecordResult, Reader};
use serde::Serialize;
use serde_json::{Map, Number, Value};

/// One record larger than this is refused, not buffered: AMC's rows are
/// small, and a broken file must not fill memory.
const MAX_RECORD_BYTES: usize = 16 << 20;

/// The type word of a result column in `result_columns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// Every value an integer.
    Integer,
    /// Every value a number, some with a fraction or exponent.
    Float,
    /// Anything else, as the application writes for every column.
    String,
}

/// One entry of `result_columns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResultColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
}

/// A record larger than [`MAX_RECORD_BYTES`].
#[derive(Debug)]
pub(super) struct RecordTooLarge;

impl std::fmt::Display for RecordTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a CSV record is larger than {MAX_RECORD_BYTES} bytes")
    }
}

impl std::error::Error for RecordTooLarge {}

/// What the records amount to, once they are all read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RecordSummary {
    pub record_count: u64,
    pub columns: Vec<ResultColumn>,
    /// The sample as a JSON array of row objects, written once at the end.
    pub rows_json: String,
    pub rows: usize,
    pub stats: Map<String, Value>,
}

/// Sums and types of one column over every record.
#[derive(Debug, Clone)]
struct ColumnTally {
    /// No value so far was text.
    numeric: bool,
    /// No numeric value so far had a fraction or exponent.
    integer: bool,
    /// Numeric values seen; a column of only empty values is text.
    values: u64,
    /// Exact while every value is an integer.
    integer_total: i128,
    float_total: f64,
}

impl ColumnTally {
    fn new() -> ColumnTally {
        ColumnTally {
            numeric: true,
            integer: true,
            values: 0,
            integer_total: 0,
            float_total: 0.0,
        }
    }

    fn column_type(&self) -> ColumnType {
        match (self.numeric && self.values > 0, self.integer) {
            (false, _) => ColumnType::String,
            (true, true) => ColumnType::Integer,
            (true, false) => ColumnType::Float,
        }
    }

    fn add(&mut self, text: &str) {
        let text = text.trim();
        if text.is_empty() || !self.numeric {
            return;
        }
        match number(text) {
            None => self.numeric = false,
            Some(value) => {
                self.values += 1;
                self.float_total += value;
                match text.parse::<i64>() {
                    Ok(n) if self.integer => self.integer_total += i128::from(n),
                    Ok(_) => {}
                    Err(_) => self.integer = false,
                }
            }
        }
    }
}

/// Python's `float(text)`, finite values only.
fn number(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    if lower.contains("inf") || lower.contains("nan") {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Streams CSV bytes in, record by record.
pub(super) struct Records {
    reader: Reader,
    /// The record being read: its fields' bytes and their end offsets.
    out: Vec<u8>,
    out_len: usize,
    ends: Vec<usize>,
    ends_len: usize,
    /// The header's column names, once read.
    names: Option<Vec<String>>,
    tallies: Vec<ColumnTally>,
    data_records: u64,
    /// `postgres.result_rows_limit`: rows kept for `result_rows`.
    sample_limit: usize,
    /// The sample's field bytes end to end, and where each field ends: a
    /// few bytes of overhead per field instead of a `String` each (10,000
    /// rows of 4 fields took 8 MiB as strings, under 1 MiB so).
    sample_bytes: Vec<u8>,
    sample_ends: Vec<u32>,
    /// Per sample row, where its fields end in `sample_ends`.
    sample_rows: Vec<u32>,
}

impl Records {
    pub(super) fn new(sample_limit: usize) -> Records {
        Records {
            reader: Reader::new(),
            out: vec![0; 4096],
            out_len: 0,
            ends: vec![0; 64],
            ends_len: 0,
            names: None,
            tallies: Vec::new(),
            data_records: 0,
            sample_limit,
            sample_bytes: Vec::new(),
            sample_ends: Vec::new(),
            sample_rows: Vec::new(),
        }
    }

    /// Reads `input`; a record cut at its end waits for the next bytes.
    pub(super) fn feed(&mut self, mut input: &[u8]) -> Result<(), RecordTooLarge> {
        loop {
            let (result, read, wrote, ended) = self.reader.read_record(
                input,
                &mut self.out[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            input = &input[read..];
            self.out_len += wrote;
            self.ends_len += ended;
            match result {
                ReadRecordResult::InputEmpty | ReadRecordResult::End => return Ok(()),
                ReadRecordResult::OutputFull => {
                    if self.out.len() >= MAX_RECORD_BYTES {
                        return Err(RecordTooLarge);
                    }
                    let grown = self.out.len() * 2;
                    self.out.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                ReadRecordResult::Record => {
                    self.record();
                    self.out_len = 0;
                    self.ends_len = 0;
                }
            }
        }
    }

    fn record(&mut self) {
        let (out, ends) = (&self.out[..self.out_len], &self.ends[..self.ends_len]);
        let fields = ends.iter().scan(0, |start, &end| {
            let field = &out[*start..end];
            *start = end;
            Some(field)
        });
        if self.names.is_none() {
            let names: Vec<String> = fields
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            self.tallies = vec![ColumnTally::new(); names.len()];
            self.names = Some(names);
            return;
        }
        self.data_records += 1;
        let keep = self.sample_rows.len() < self.sample_limit;
        // Fields beyond the header have no name: the application drops them.
        for (field, tally) in fields.zip(self.tallies.iter_mut()) {
            tally.add(&String::from_utf8_lossy(field));
            if keep {
                self.sample_bytes.extend_from_slice(field);
                self.sample_ends.push(self.sample_bytes.len() as u32);
            }
        }
        if keep {
            self.sample_rows.push(self.sample_ends.len() as u32);
        }
    }

    /// Ends the input (a last record without a line break counts) and
    /// turns the tallies into the summary.
    pub(super) fn finish(mut self) -> Result<RecordSummary, RecordTooLarge> {
        self.feed(&[])?;
        let names = self.names.take().unwrap_or_default();
        let types: Vec<ColumnType> = self.tallies.iter().map(ColumnTally::column_type).collect();
        let columns = names
            .iter()
            .zip(&types)
            .map(|(name, &column_type)| ResultColumn {
                name: name.clone(),
                column_type,
            })
            .collect();
        let rows_json = self.rows_json(&names, &types);
        let mut stats = Map::new();
        for (name, tally) in names.iter().zip(&self.tallies) {
            let total = match tally.column_type() {
                ColumnType::String => continue,
                ColumnType::Integer => i64::try_from(tally.integer_total)
                    .map(Number::from)
                    .ok()
                    .or_else(|| Number::from_f64(tally.float_total)),
                ColumnType::Float => Number::from_f64(tally.float_total),
            };
            let average = Number::from_f64(tally.float_total / self.data_records as f64);
            if let (Some(total), Some(average)) = (total, average) {
                stats.insert(format!("total_{name}"), Value::Number(total));
                stats.insert(format!("avg_{name}"), Value::Number(average));
            }
        }
        Ok(RecordSummary {
            record_count: self.data_records,
            columns,
            rows_json,
            rows: self.sample_rows.len(),
            stats,
        })
    }

    /// The sample as `result_rows`: `[{"column": value, ..}, ..]`.
    fn rows_json(&self, names: &[String], types: &[ColumnType]) -> String {
        let keys: Vec<String> = names
            .iter()
            .map(|n| Value::String(n.clone()).to_string())
            .collect();
        let mut json = String::from("[");
        let mut field = 0usize;
        let mut start = 0usize;
        for (row, &row_end) in self.sample_rows.iter().enumerate() {
            if row > 0 {
                json.push(',');
            }
            json.push('{');
            let row_end = row_end as usize;
            for (index, key) in keys.iter().enumerate() {
                if index > 0 {
                    json.push(',');
                }
                json.push_str(key);
                json.push(':');
                if field < row_end {
                    let end = self.sample_ends[field] as usize;
                    let text = String::from_utf8_lossy(&self.sample_bytes[start..end]);
                    json.push_str(&json_value(&text, types[index]).to_string());
                    start = end;
                    field += 1;
                } else {
                    json.push_str("null");
                }
            }
            json.push('}');
        }
        json.push(']');
        json
    }
}

/// A field as `result_rows` holds it: numbers as numbers in numeric
/// columns, empty values as `null` there, text as it came.
fn json_value(text: &str, column_type: ColumnType) -> Value {
    let trimmed = text.trim();
    match column_type {
        ColumnType::String => Value::String(text.to_owned()),
        _ if trimmed.is_empty() => Value::Null,
        ColumnType::Integer => trimmed
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.to_owned())),
        ColumnType::Float => number(trimmed)
            .and_then(Number::from_f64)
            .map_or_else(|| Value::String(text.to_owned()), Value::Number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(summary: &RecordSummary) -> Vec<Value> {
        match serde_json::from_str(&summary.rows_json).unwrap() {
            Value::Array(rows) => rows,
            other => panic!("{other}"),
        }
    }

    fn read(csv: &[u8], limit: usize) -> RecordSummary {
        let mut records = Records::new(limit);
        // Three bytes at a time: records and quotes cut anywhere.
        for chunk in csv.chunks(3) {
            records.feed(chunk).unwrap();
        }
        records.finish().unwrap()
    }

    #[test]
    fn a_quoted_field_with_line_breaks_is_one_record() {
        let summary = read(b"a,b\n1,\"x\ny, \"\"z\"\"\"\r\n2,plain", 10);
        assert_eq!(summary.record_count, 2);
        assert_eq!(rows(&summary)[0]["b"], json!("x\ny, \"z\""));
        assert_eq!(rows(&summary)[1]["b"], json!("plain"));
    }

    #[test]
    fn columns_rows_and_stats_follow_the_applications_rules() {
        let csv =
            b"campaign,impressions,spend,note,empty\nc1,10, 1.5,x,\nc2,30,2.5e0,7,\nc3,,1,y,\n";
        let summary = read(csv, 2);
        let types: Vec<_> = summary
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.column_type))
            .collect();
        assert_eq!(
            types,
            [
                ("campaign", ColumnType::String),
                ("impressions", ColumnType::Integer),
                ("spend", ColumnType::Float),
                ("note", ColumnType::String),
                ("empty", ColumnType::String),
            ]
        );
        assert_eq!(
            serde_json::to_value(&summary.columns[1]).unwrap(),
            json!({"name": "impressions", "type": "integer"})
        );
        assert_eq!(summary.record_count, 3);
        assert_eq!(summary.rows, 2, "the sample stops at the limit");
        assert_eq!(rows(&summary).len(), 2);
        assert_eq!(
            rows(&summary)[0],
            json!({"campaign": "c1", "impressions": 10, "spend": 1.5, "note": "x", "empty": ""})
        );
        assert_eq!(
            Value::Object(summary.stats),
            json!({
                "total_impressions": 40, "avg_impressions": 40.0 / 3.0,
                "total_spend": 5.0, "avg_spend": 5.0 / 3.0,
            })
        );
    }

    #[test]
    fn a_short_row_has_nulls_and_a_header_only_result_has_no_rows() {
        let summary = read(b"a,b\n1\n", 5);
        assert_eq!(rows(&summary)[0], json!({"a": 1, "b": null}));
        let header_only = read(b"a,b\n", 5);
        assert_eq!((header_only.record_count, header_only.stats.len()), (0, 0));
        assert_eq!(read(b"", 5).record_count, 0);
        let none = read(b"a\n1\n", 0);
        assert_eq!(
            (none.rows, none.rows_json.as_str()),
            (0, "[]"),
            "0 keeps no rows"
        );
    }

    #[test]
    fn nan_and_infinity_are_text_not_numbers() {
        let summary = read(b"x\n1\nnan\n", 5);
        assert_eq!(summary.columns[0].column_type, ColumnType::String);
        assert!(summary.stats.is_empty());
    }
}
