//! How journal values are stored as SQLite text and read back: RFC 3339
//! timestamps, dates, UUIDs and JSON columns, with a decoding error that
//! names the column instead of a panic.
//!
//! Owns the conversions only; every query lives with its concern.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rusqlite::{Connection, Row};
use uuid::Uuid;

use crate::amc::CreateExecution;

/// RFC 3339 UTC with milliseconds: sorts as text, parses everywhere.
pub(super) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(super) fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

pub(super) fn uuid_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Uuid> {
    let text: String = row.get(index)?;
    Uuid::parse_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) fn date_at(row: &Row<'_>, index: usize) -> rusqlite::Result<NaiveDate> {
    let text: String = row.get(index)?;
    parse_date(&text).ok_or_else(|| bad_value(index, &text))
}

pub(super) fn time_at(row: &Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text: String = row.get(index)?;
    parse_timestamp(&text).ok_or_else(|| bad_value(index, &text))
}

pub(super) fn optional_time_at(
    row: &Row<'_>,
    index: usize,
) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let text: Option<String> = row.get(index)?;
    text.map(|t| parse_timestamp(&t).ok_or_else(|| bad_value(index, &t)))
        .transpose()
}

pub(super) fn bad_value(index: usize, text: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        index,
        rusqlite::types::Type::Text,
        format!("`{text}` is not a valid value for this column").into(),
    )
}

pub(super) fn request_at(row: &Row<'_>, index: usize) -> rusqlite::Result<CreateExecution> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Reads the rows with these ids in one statement: the ids travel as one
/// JSON array, so a batch costs one query, not one per row.
pub(super) fn rows_by_id<T>(
    connection: &Connection,
    sql: &str,
    ids: &BTreeSet<String>,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids = serde_json::to_string(ids).expect("strings always serialize");
    let mut statement = connection.prepare_cached(sql)?;
    let rows = statement.query_map([ids], map)?;
    rows.collect()
}

pub(super) fn collect_strings(
    connection: &Connection,
    sql: &str,
    key: &str,
) -> rusqlite::Result<Vec<String>> {
    let mut statement = connection.prepare(sql)?;
    let rows = statement.query_map([key], |row| row.get(0))?;
    rows.collect()
}

pub(super) fn sqlite_text(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Value> {
    Ok(match row.get_ref(index)? {
        rusqlite::types::ValueRef::Null => Value::Null,
        rusqlite::types::ValueRef::Integer(n) => json!(n),
        rusqlite::types::ValueRef::Real(x) => json!(x),
        rusqlite::types::ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
        rusqlite::types::ValueRef::Blob(b) => json!(hex::encode(b)),
    })
}

/// A JSON column.
pub(super) fn json_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Value> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// A JSON column that may be NULL.
pub(super) fn optional_json_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Value>> {
    let text: Option<String> = row.get(index)?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                index,
                rusqlite::types::Type::Text,
                Box::new(e),
            )
        })
    })
    .transpose()
}
