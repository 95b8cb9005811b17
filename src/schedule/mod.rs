//! Schedule files: `schedules/NAME.toml`, one historical collection each.
//!
//! Owns parsing and validating them, with errors naming the file and key.
//! It does not decide which weeks are due (see `week`) nor fire cron jobs
//! (see `daemon`).

pub(crate) mod firing;
pub mod week;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::amc::CreateExecution;

/// A schedule file that cannot be used, named with the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("schedule file {}: {message}", file.display())]
pub struct ScheduleError {
    pub file: PathBuf,
    pub message: String,
}

/// The file as written; every field optional that DESIGN.md gives a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    name: Option<String>,
    cron: String,
    timezone: Option<String>,
    instance_id: String,
    workflow_id: String,
    week_start: String,
    backfill_weeks: Option<u32>,
    /// A TOML date (`2024-01-01`) or a string holding one.
    backfill_from: Option<toml::Value>,
    data_lag_days: Option<u32>,
    max_retries: Option<u32>,
    /// A humantime span, e.g. "3days".
    catchup_window: Option<String>,
    /// The application's collection (`coll_...`) this schedule continues.
    collection_id: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, String>,
}

/// Where a collection starts the first time it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backfill {
    /// The N most recent due weeks.
    Weeks(u32),
    /// The first week starting on or after this date.
    From(NaiveDate),
}

#[derive(Debug, Clone)]
pub struct Schedule {
    /// Collection name; its UUIDv5 is the collection id (I5).
    pub name: String,
    /// Six fields with seconds, as croner parses them (see `firing`).
    pub cron: String,
    /// Weeks are calendar weeks in this zone, and cron fires in it.
    pub timezone: Tz,
    pub instance_id: String,
    pub workflow_id: String,
    pub week_start: Weekday,
    pub backfill: Backfill,
    /// AMC data lags; a week is due only this long after it ended.
    pub data_lag_days: u32,
    /// New attempts after a failed one, per week and per run.
    pub max_retries: u32,
    /// Sent as `parameterValues`.
    pub parameters: BTreeMap<String, String>,
    /// `collection_id`: the application collection (`coll_...`) to attach
    /// to; without it a schedule attaches to the one collection of its
    /// workflow and instance, if the application has one.
    pub collection_id: Option<String>,
    /// Overrides `scheduler.catchup_window` for this schedule: how far back
    /// missed firings are caught up at start.
    pub catchup_window: Option<std::time::Duration>,
    /// The file it came from, for errors and lineage.
    pub file: PathBuf,
    /// sha256 of the file's bytes: lineage records which version ran.
    pub content_hash: String,
}

impl Schedule {
    /// Parses one file. `today` is the date in UTC used to refuse a
    /// `backfill_from` in the future.
    pub fn from_file(file: &Path, today: NaiveDate) -> Result<Schedule, ScheduleError> {
        let error = |message: String| ScheduleError {
            file: file.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(file).map_err(|e| error(format!("cannot read: {e}")))?;
        let text = String::from_utf8(bytes.clone()).map_err(|_| error("is not UTF-8".into()))?;
        let raw: ScheduleFile = toml::from_str(&text).map_err(|e| error(toml_message(&e)))?;
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let name = raw.name.unwrap_or(stem);
        if name.trim().is_empty() {
            return Err(error("key `name`: must not be empty".into()));
        }
        validate_cron(&raw.cron).map_err(|why| error(format!("key `cron`: {why}")))?;
        let timezone = match raw.timezone.as_deref() {
            None => Tz::UTC,
            Some(zone) => zone.parse().map_err(|_| {
                error(format!(
                    "key `timezone`: `{zone}` is not an IANA time zone (e.g. `Europe/Berlin`)"
                ))
            })?,
        };
        let week_start = match raw.week_start.to_ascii_lowercase().as_str() {
            "monday" => Weekday::Mon,
            "sunday" => Weekday::Sun,
            other => {
                return Err(error(format!(
                    "key `week_start`: `{other}` must be \"monday\" or \"sunday\""
                )));
            }
        };
        let backfill_from = raw
            .backfill_from
            .as_ref()
            .map(|value| {
                toml_date(value).ok_or_else(|| {
                    error(format!(
                        "key `backfill_from`: `{value}` is not a date like 2024-01-01"
                    ))
                })
            })
            .transpose()?;
        let backfill = match (raw.backfill_weeks, backfill_from) {
            (Some(_), Some(_)) => {
                return Err(error(
                    "keys `backfill_weeks` and `backfill_from`: set one, not both".into(),
                ));
            }
            (None, None) => {
                return Err(error(
                    "key `backfill_weeks` or `backfill_from` is required".into(),
                ));
            }
            (Some(0), None) => {
                return Err(error("key `backfill_weeks`: must be at least 1".into()));
            }
            (Some(n), None) => Backfill::Weeks(n),
            (None, Some(date)) if date > today => {
                return Err(error(format!(
                    "key `backfill_from`: {date} is in the future"
                )));
            }
            (None, Some(date)) => Backfill::From(date),
        };
        for (key, value) in [
            ("instance_id", &raw.instance_id),
            ("workflow_id", &raw.workflow_id),
        ] {
            if value.trim().is_empty() {
                return Err(error(format!("key `{key}`: must not be empty")));
            }
        }
        // The instance goes into every API path: only AMC's id alphabet, so
        // no value can reach another instance (`../`) or its limit.
        if !raw
            .instance_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(error(format!(
                "key `instance_id`: `{}` is not an AMC instance id (letters, digits, `-` and `_` only)",
                raw.instance_id.escape_debug()
            )));
        }
        // What is sent to AMC ends in the journal and in Postgres, whose
        // text and jsonb cannot hold a NUL: refused here, before anything
        // is submitted, instead of quarantined rows later.
        let texts = [
            ("workflow_id".to_owned(), &raw.workflow_id),
            ("name".to_owned(), &name),
        ]
        .into_iter()
        .chain(raw.parameters.iter().flat_map(|(key, value)| {
            [
                (format!("parameters.{}", key.escape_debug()), key),
                (format!("parameters.{}", key.escape_debug()), value),
            ]
        }));
        for (key, text) in texts {
            if text.contains('\0') {
                return Err(error(format!(
                    "key `{key}`: holds a NUL character, which Postgres cannot store"
                )));
            }
        }
        let collection_id = match raw.collection_id {
            Some(id) if id.trim().is_empty() || id.contains('\0') => {
                return Err(error(
                    "key `collection_id`: must name an application collection like \"coll_1a2b3c4d\"".into(),
                ));
            }
            other => other,
        };
        let catchup_window = raw
            .catchup_window
            .as_deref()
            .map(|text| {
                humantime::parse_duration(text).map_err(|e| {
                    error(format!(
                        "key `catchup_window`: `{text}` is not a duration like \"3days\" ({e})"
                    ))
                })
            })
            .transpose()?;
        Ok(Schedule {
            name,
            cron: raw.cron,
            timezone,
            instance_id: raw.instance_id,
            workflow_id: raw.workflow_id,
            week_start,
            backfill,
            data_lag_days: raw.data_lag_days.unwrap_or(14),
            max_retries: raw.max_retries.unwrap_or(3),
            parameters: raw.parameters,
            collection_id,
            catchup_window,
            file: file.to_path_buf(),
            content_hash: hex::encode(Sha256::digest(&bytes)),
        })
    }
}

impl Schedule {
    /// The schedule with its start reaching back to the week of `from` (planning
    /// keeps the earlier of that and the recorded start), and the first and
    /// last week that hold a day of `from..=to`.
    pub fn reaching(&self, (from, to): (NaiveDate, NaiveDate)) -> (Schedule, NaiveDate, NaiveDate) {
        let (first, last) = (
            week::align(from, self.week_start),
            week::align(to, self.week_start),
        );
        let reaching = Schedule {
            backfill: Backfill::From(first),
            ..self.clone()
        };
        (reaching, first, last)
    }

    /// The create body for one of its weeks: the same on every attempt, so
    /// a retry asks AMC for exactly the same data.
    pub fn request(&self, week_start: NaiveDate) -> CreateExecution {
        let (start, end) = week::time_window(week_start);
        CreateExecution {
            workflow_id: self.workflow_id.clone(),
            time_window_type: "EXPLICIT".to_owned(),
            time_window_start: start,
            time_window_end: end,
            time_window_time_zone: self.timezone.name().to_owned(),
            parameter_values: self.parameters.clone(),
        }
    }
}

/// Loads every `*.toml` in `dir`, sorted by file name. One bad file fails the
/// whole load: running a subset silently would hide the mistake.
pub fn load_dir(dir: &Path, today: NaiveDate) -> Result<Vec<Schedule>, ScheduleError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ScheduleError {
        file: dir.to_path_buf(),
        message: format!("cannot read the schedules folder: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    let schedules = files
        .iter()
        .map(|file| Schedule::from_file(file, today))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for schedule in &schedules {
        if let Some(other) = seen.insert(&schedule.name, &schedule.file) {
            return Err(ScheduleError {
                file: schedule.file.clone(),
                message: format!(
                    "key `name`: `{}` is also the name in {}",
                    schedule.name,
                    other.display()
                ),
            });
        }
    }
    Ok(schedules)
}

/// Finds one schedule by name in `dir`.
pub fn find(dir: &Path, name: &str, today: NaiveDate) -> Result<Schedule, ScheduleError> {
    let schedules = load_dir(dir, today)?;
    let known: Vec<String> = schedules.iter().map(|s| s.name.clone()).collect();
    schedules
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ScheduleError {
            file: dir.to_path_buf(),
            message: format!(
                "no schedule named `{name}` (known: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        })
}

/// The parser the daemon's timer uses, so what passes here fires there.
fn validate_cron(expression: &str) -> Result<(), String> {
    crate::schedule::firing::parse_cron(expression).map(|_| ())
}

/// toml's own text shows the offending line, so the key is always named.
fn toml_message(error: &toml::de::Error) -> String {
    error.to_string().trim_end().to_owned()
}

fn toml_date(value: &toml::Value) -> Option<NaiveDate> {
    match value {
        toml::Value::Datetime(datetime) if datetime.time.is_none() => {
            let date = datetime.date?;
            NaiveDate::from_ymd_opt(date.year.into(), date.month.into(), date.day.into())
        }
        toml::Value::String(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d").ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path
    }

    const VALID: &str = r#"
cron = "0 0 6 * * Mon"
instance_id = "amcinst"
workflow_id = "campaign_performance"
week_start = "monday"
backfill_weeks = 4
"#;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()
    }

    #[test]
    fn a_minimal_schedule_takes_its_defaults_and_its_file_stem_as_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = Schedule::from_file(&write(dir.path(), "weekly.toml", VALID), today()).unwrap();
        assert_eq!(s.name, "weekly");
        assert_eq!(s.timezone, Tz::UTC);
        assert_eq!(s.data_lag_days, 14);
        assert_eq!(s.max_retries, 3);
        assert_eq!(s.backfill, Backfill::Weeks(4));
        assert_eq!(s.content_hash.len(), 64);
    }

    #[test]
    fn each_bad_key_is_named_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "cron = \"0 0 6 * * Mon\"",
                "cron = \"every monday\"",
                "key `cron`",
            ),
            (
                "week_start = \"monday\"",
                "week_start = \"friday\"",
                "key `week_start`",
            ),
            (
                "backfill_weeks = 4",
                "backfill_from = 2099-01-01",
                "key `backfill_from`",
            ),
            (
                "backfill_weeks = 4",
                "backfill_weeks = 4\ncolour = \"red\"",
                "colour",
            ),
            (
                "backfill_weeks = 4",
                "backfill_weeks = 4\ncatchup_window = \"soon\"",
                "key `catchup_window`",
            ),
        ];
        for (from, to, expected) in cases {
            let file = write(dir.path(), "bad.toml", &VALID.replace(from, to));
            let err = Schedule::from_file(&file, today()).unwrap_err().to_string();
            assert!(err.contains("bad.toml"), "{err}");
            assert!(err.contains(expected), "{err} should name {expected}");
        }
        let tz = write(
            dir.path(),
            "tz.toml",
            &format!("{VALID}timezone = \"Mars/Olympus\"\n"),
        );
        let err = Schedule::from_file(&tz, today()).unwrap_err().to_string();
        assert!(
            err.contains("key `timezone`") && err.contains("Mars/Olympus"),
            "{err}"
        );
    }

    #[test]
    fn an_instance_id_outside_amcs_alphabet_and_a_nul_are_refused_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let climbing = VALID.replace("\"amcinst\"", "\"amcinj01/../amcother\"");
        let file = write(dir.path(), "climb.toml", &climbing);
        let err = Schedule::from_file(&file, today()).unwrap_err().to_string();
        assert!(
            err.contains("climb.toml") && err.contains("key `instance_id`"),
            "{err}"
        );
        let nul = format!("{VALID}[parameters]\nregion = \"eu\\u0000\"\n");
        let file = write(dir.path(), "nul.toml", &nul);
        let err = Schedule::from_file(&file, today()).unwrap_err().to_string();
        assert!(
            err.contains("nul.toml") && err.contains("key `parameters.region`"),
            "{err}"
        );
        assert!(err.contains("NUL"), "{err}");
    }

    #[test]
    fn two_files_with_one_name_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.toml", &format!("name = \"same\"\n{VALID}"));
        write(dir.path(), "b.toml", &format!("name = \"same\"\n{VALID}"));
        let err = load_dir(dir.path(), today()).unwrap_err().to_string();
        assert!(err.contains("`same`"), "{err}");
    }
}
