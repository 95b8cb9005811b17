//! `chronicle export --what weeks|executions|events --format csv|json|ndjson`:
//! writes journal rows as CSV (RFC 4180 quoting), one JSON array, or one
//! JSON object per line. Rows are written as they are read; events are
//! streamed from the journal, never held whole.
//!
//! Owns the three encodings. The rows come from the journal's inspection
//! queries; evidence files (with their hash chain) are `evidence`'s.

use std::io::Write;

use clap::ValueEnum;
use serde_json::Value;

use crate::journal::{EventFilter, ExecutionFilter, Journal, JournalError, StoredEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum What {
    Weeks,
    Executions,
    Events,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Json,
    Ndjson,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
}

const WEEK_COLUMNS: &[&str] = &[
    "schedule",
    "week_id",
    "week_start",
    "status",
    "attempts",
    "amc_execution_id",
    "record_count",
    "data_checksum",
    "synced",
];
const EXECUTION_COLUMNS: &[&str] = &[
    "attempt_id",
    "schedule",
    "week_start",
    "state",
    "amc_execution_id",
    "amc_status",
    "row_count",
    "data_checksum",
    "triggered_by",
    "created_at",
    "completed_at",
];
const EVENT_COLUMNS: &[&str] = &[
    "seq",
    "at",
    "kind",
    "subject",
    "payload",
    "prev_hash",
    "hash",
];

/// Writes rows in one format; `finish` closes a JSON array.
struct Sink<W: Write> {
    out: W,
    format: Format,
    columns: &'static [&'static str],
    rows: u64,
}

impl<W: Write> Sink<W> {
    fn new(mut out: W, format: Format, columns: &'static [&'static str]) -> std::io::Result<Self> {
        match format {
            Format::Csv => writeln!(out, "{}", columns.join(","))?,
            Format::Json => write!(out, "[")?,
            Format::Ndjson => {}
        }
        Ok(Sink {
            out,
            format,
            columns,
            rows: 0,
        })
    }

    fn row(&mut self, row: &Value) -> std::io::Result<()> {
        match self.format {
            Format::Csv => {
                let cells: Vec<String> = self
                    .columns
                    .iter()
                    .map(|c| csv_cell(row.get(*c).unwrap_or(&Value::Null)))
                    .collect();
                writeln!(self.out, "{}", cells.join(","))?;
            }
            Format::Json => {
                if self.rows > 0 {
                    write!(self.out, ",")?;
                }
                write!(self.out, "\n{row}")?;
            }
            Format::Ndjson => writeln!(self.out, "{row}")?,
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<u64> {
        if self.format == Format::Json {
            writeln!(self.out, "\n]")?;
        }
        self.out.flush()?;
        Ok(self.rows)
    }
}

fn csv_cell(value: &Value) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Writes `what` to `out`; returns how many rows. `schedule` narrows weeks
/// and executions to one collection.
pub fn export(
    journal: &Journal,
    what: What,
    format: Format,
    schedule: Option<&str>,
    out: impl Write,
) -> Result<u64, ExportError> {
    match what {
        What::Weeks => {
            let mut sink = Sink::new(out, format, WEEK_COLUMNS)?;
            let names: Vec<String> = match schedule {
                Some(name) => vec![name.to_owned()],
                None => journal
                    .status()?
                    .collections
                    .into_iter()
                    .map(|c| c.name)
                    .collect(),
            };
            for name in names {
                for week in journal.weeks_of(&name)?.unwrap_or_default() {
                    let mut row = serde_json::to_value(&week).expect("weeks always serialize");
                    row["schedule"] = Value::String(name.clone());
                    sink.row(&row)?;
                }
            }
            Ok(sink.finish()?)
        }
        What::Executions => {
            let mut sink = Sink::new(out, format, EXECUTION_COLUMNS)?;
            let filter = ExecutionFilter {
                schedule: schedule.map(str::to_owned),
                ..ExecutionFilter::default()
            };
            for line in journal.executions(&filter)? {
                sink.row(&serde_json::to_value(&line).expect("executions always serialize"))?;
            }
            Ok(sink.finish()?)
        }
        What::Events => {
            let mut sink = Sink::new(out, format, EVENT_COLUMNS)?;
            journal.each_event(&EventFilter::default(), |event: StoredEvent| {
                sink.row(&serde_json::to_value(&event).expect("events always serialize"))
                    .map_err(ExportError::from)
            })?;
            Ok(sink.finish()?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_only_when_they_must_be() {
        assert_eq!(csv_cell(&Value::Null), "");
        assert_eq!(csv_cell(&serde_json::json!(42)), "42");
        assert_eq!(csv_cell(&serde_json::json!("plain")), "plain");
        assert_eq!(
            csv_cell(&serde_json::json!(r#"{"a":1,"b":2}"#)),
            r#""{""a"":1,""b"":2}""#
        );
    }
}
