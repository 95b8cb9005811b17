//! The wire formats the real AMC API enforces, written down once: the time
//! formats of `minCreationTime` and of the create call's window, header and
//! query parameter names, the body shapes, path segments, and the lenient
//! reading of times in answers. The HTTP client builds its requests from
//! here and the simulator refuses whatever does not pass the same rules, so
//! the two cannot drift apart silently (ARCHITECTURE.md, "Talking to AMC").
//!
//! Owns formats and shapes only: no I/O, no retries, no state.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// The account headers every API call carries (besides `Authorization`).
pub const CLIENT_ID_HEADER: &str = "Amazon-Advertising-API-ClientId";
pub const ADVERTISER_ID_HEADER: &str = "Amazon-Advertising-API-AdvertiserId";
pub const MARKETPLACE_ID_HEADER: &str = "Amazon-Advertising-API-MarketplaceId";
pub const ACCOUNT_HEADERS: [&str; 3] = [
    CLIENT_ID_HEADER,
    ADVERTISER_ID_HEADER,
    MARKETPLACE_ID_HEADER,
];

/// Query parameters of `GET /workflowExecutions`.
pub const WORKFLOW_ID_PARAM: &str = "workflowId";
pub const MIN_CREATION_TIME_PARAM: &str = "minCreationTime";
pub const LIMIT_PARAM: &str = "limit";
pub const NEXT_TOKEN_PARAM: &str = "nextToken";

/// AMC answers at most this many executions a page; chronicle asks for all
/// of them, so a listing takes as few calls as it can.
pub const LIST_PAGE_LIMIT: usize = 100;

/// The only window type chronicle sends: calendar weeks, never AMC's
/// relative windows, so a retry asks for exactly the same data.
pub const EXPLICIT_WINDOW: &str = "EXPLICIT";

/// `yyyy-MM-ddTHH:mm:ss`: no zone suffix, no fraction. Both
/// `minCreationTime` (in UTC) and the create call's window (wall time in
/// `timeWindowTimeZone`) must be written exactly so; AMC refuses
/// `2025-01-06T09:30:00Z` and `2025-01-06T09:30:00.000` with HTTP 400.
pub const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// A time in the one form AMC takes in requests.
pub fn format_time(time: NaiveDateTime) -> String {
    time.format(TIME_FORMAT).to_string()
}

/// `minCreationTime` for a UTC instant; sub-second parts are dropped
/// (rounded down, so the listing never starts after the instant).
pub fn format_min_creation_time(time: DateTime<Utc>) -> String {
    format_time(time.naive_utc())
}

/// Reads a request time strictly, as AMC does: exactly `yyyy-MM-ddTHH:mm:ss`.
/// The error says what is wrong, for AMC's kind of 400 body.
pub fn parse_time(text: &str) -> Result<NaiveDateTime, String> {
    let refused = |why: &str| format!("{text:?} is not yyyy-MM-ddTHH:mm:ss ({why})");
    if text.ends_with('Z') || text.contains('+') {
        return Err(refused("no zone suffix is allowed"));
    }
    if text.contains('.') {
        return Err(refused("no fraction of a second is allowed"));
    }
    let time =
        NaiveDateTime::parse_from_str(text, TIME_FORMAT).map_err(|e| refused(&e.to_string()))?;
    // chrono takes `2025-1-6T9:30:00` too; AMC does not.
    if format_time(time) != text {
        return Err(refused("every field must have its full width"));
    }
    Ok(time)
}

/// A time in an answer (`createTime`, `lastUpdatedTime`, windows): with or
/// without `Z` or an offset, with or without fractional seconds. Times
/// without a zone are UTC, as AMC writes them.
pub fn parse_answer_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// One path segment, percent-encoded: an id can never add a segment, climb
/// out of its instance (`amcinj01/../amcother`) or add a query.
pub fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => out.push(byte as char),
            // Dots too: `%2E%2E` alone is still a dot segment to URL parsers,
            // which is why instance and execution ids are also checked.
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Whether an id (an instance's, an execution's) can stand alone as a path
/// segment: not empty and not a dot segment, which URL parsers remove
/// however it is encoded.
pub fn is_segment_id(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".."
}

/// AMC's execution status words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Rejected,
    /// A word this build does not know yet; treated as still running so a
    /// new AMC status never makes chronicle give up on a live execution.
    #[serde(other)]
    Unknown,
}

impl Status {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Succeeded | Status::Failed | Status::Cancelled | Status::Rejected
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::Cancelled => "CANCELLED",
            Status::Rejected => "REJECTED",
            Status::Unknown => "UNKNOWN",
        }
    }

    pub fn parse(word: &str) -> Status {
        serde_json::from_value(serde_json::Value::String(word.to_owned()))
            .unwrap_or(Status::Unknown)
    }
}

/// Body of `POST /workflowExecutions` for one week of a saved workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateExecution {
    pub workflow_id: String,
    /// Always [`EXPLICIT_WINDOW`].
    pub time_window_type: String,
    /// Wall time in `time_window_time_zone`, in [`TIME_FORMAT`].
    pub time_window_start: String,
    pub time_window_end: String,
    /// An IANA zone name.
    pub time_window_time_zone: String,
    #[serde(default)]
    pub parameter_values: BTreeMap<String, String>,
}

impl CreateExecution {
    /// What AMC refuses in a create body, in the words of its 400 `details`;
    /// the window's local start and end when it passes. The zone itself is
    /// checked by whoever converts the window (the simulator).
    pub fn check(&self) -> Result<(NaiveDateTime, NaiveDateTime), String> {
        if self.workflow_id.trim().is_empty() {
            return Err("workflowId must not be empty".into());
        }
        if self.time_window_type != EXPLICIT_WINDOW {
            let kind = &self.time_window_type;
            return Err(format!(
                "timeWindowType {kind:?} is not supported; use {EXPLICIT_WINDOW}"
            ));
        }
        if self.time_window_time_zone.trim().is_empty() {
            return Err("timeWindowTimeZone must not be empty".into());
        }
        let start =
            parse_time(&self.time_window_start).map_err(|e| format!("timeWindowStart {e}"))?;
        let end = parse_time(&self.time_window_end).map_err(|e| format!("timeWindowEnd {e}"))?;
        if end <= start {
            return Err("timeWindowEnd must be after timeWindowStart".into());
        }
        Ok((start, end))
    }
}

/// The execution object AMC answers with (flat form; the wrapped form
/// `{"workflowExecution":{...}}` is unwrapped by the client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub workflow_execution_id: String,
    #[serde(default)]
    pub workflow_id: String,
    pub status: Status,
    /// Any of the forms [`parse_answer_time`] reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_time: Option<String>,
    /// UTC, `...Z` (or without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window_end: Option<String>,
    /// The window exactly as it was sent; what adoption matches on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window_start_original: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window_end_original: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window_time_zone_original: Option<String>,
    /// The parameters the execution runs with, as sent; values may be
    /// strings or lists, so they are kept as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_values: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Some deployments explain a failure here instead of in the reasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// Likewise; kept so no explanation AMC gives is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Execution {
    /// What AMC said about a failure, for `error_message`.
    pub fn reason(&self) -> Option<String> {
        let mut said: Vec<&str> = Vec::new();
        for text in [
            &self.failure_reason,
            &self.status_reason,
            &self.details,
            &self.message,
        ]
        .into_iter()
        .flatten()
        {
            let text = text.trim();
            if !text.is_empty() && !said.contains(&text) {
                said.push(text);
            }
        }
        (!said.is_empty()).then(|| said.join("; "))
    }

    /// When AMC created it, read leniently; `None` when absent or unreadable.
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        self.create_time.as_deref().and_then(parse_answer_time)
    }
}

/// One page of `GET /workflowExecutions`, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionPage {
    pub executions: Vec<Execution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Filters of `GET /workflowExecutions`. AMC requires `workflowId` or
/// `minCreationTime`; chronicle always sends the latter.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Empty lists the executions of every workflow.
    pub workflow_id: String,
    pub min_creation_time: DateTime<Utc>,
    pub next_token: Option<String>,
}

impl ListQuery {
    /// The query string, in AMC's names and formats.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut params = vec![
            (
                MIN_CREATION_TIME_PARAM,
                format_min_creation_time(self.min_creation_time),
            ),
            (LIMIT_PARAM, LIST_PAGE_LIMIT.to_string()),
        ];
        if !self.workflow_id.is_empty() {
            params.push((WORKFLOW_ID_PARAM, self.workflow_id.clone()));
        }
        if let Some(token) = &self.next_token {
            params.push((NEXT_TOKEN_PARAM, token.clone()));
        }
        params
    }
}

/// A list call's query string as AMC reads it, or why it refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    pub workflow_id: Option<String>,
    pub min_creation_time: Option<DateTime<Utc>>,
    pub limit: usize,
    /// An empty `nextToken` (some clients send `nextToken=` on the first
    /// page) means the first page.
    pub next_token: Option<String>,
}

impl ListFilter {
    /// Reads the decoded query parameters strictly.
    pub fn parse<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ListFilter, String> {
        let mut filter = ListFilter {
            workflow_id: None,
            min_creation_time: None,
            limit: LIST_PAGE_LIMIT,
            next_token: None,
        };
        for (name, value) in params {
            match name {
                WORKFLOW_ID_PARAM => filter.workflow_id = Some(value.to_owned()),
                MIN_CREATION_TIME_PARAM => {
                    let time = parse_time(value).map_err(|e| format!("minCreationTime {e}"))?;
                    filter.min_creation_time = Some(time.and_utc());
                }
                LIMIT_PARAM => {
                    filter.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=LIST_PAGE_LIMIT).contains(n))
                        .ok_or_else(|| {
                            format!("limit {value:?} must be a number from 1 to {LIST_PAGE_LIMIT}")
                        })?;
                }
                NEXT_TOKEN_PARAM => {
                    filter.next_token = Some(value.to_owned()).filter(|t| !t.is_empty());
                }
                other => return Err(format!("unknown query parameter {other:?}")),
            }
        }
        if filter.workflow_id.as_deref().is_none_or(str::is_empty)
            && filter.min_creation_time.is_none()
        {
            return Err("either workflowId or minCreationTime is required".into());
        }
        Ok(filter)
    }
}

/// `GET /workflowExecutions/{id}/downloadUrls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DownloadUrls {
    pub download_urls: Vec<String>,
}

/// `PUT /workflowExecutions/{id}`: the only change AMC takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CancelBody {
    pub status: Status,
}

/// AMC's error body: `{"code":..,"details":..}` or `{"message":..}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ErrorBody {
    pub fn text(&self) -> String {
        [&self.code, &self.details, &self.message]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join(": ")
    }
}

/// The HTTP statuses AMC answers a successful create with.
pub fn is_create_success(status: u16) -> bool {
    matches!(status, 200 | 202)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_times_are_written_and_read_in_the_one_form_amc_takes() {
        let time = parse_time("2025-01-06T09:30:00").unwrap();
        assert_eq!(format_time(time), "2025-01-06T09:30:00");
        let instant = DateTime::parse_from_rfc3339("2026-11-30T10:15:00.734Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_min_creation_time(instant), "2026-11-30T10:15:00");
        for refused in [
            "2025-01-06T09:30:00Z",
            "2025-01-06T09:30:00.000",
            "2025-01-06T09:30:00+00:00",
            "2025-01-06",
            "2025-1-6T9:30:00",
            "next tuesday",
        ] {
            assert!(parse_time(refused).is_err(), "{refused} must be refused");
        }
    }

    #[test]
    fn answer_times_are_read_with_or_without_zone_and_fraction() {
        let expected = parse_answer_time("2025-01-06T09:30:00Z").unwrap();
        for form in [
            "2025-01-06T09:30:00",
            "2025-01-06T09:30:00.000Z",
            "2025-01-06T09:30:00.000",
            "2025-01-06T10:30:00+01:00",
        ] {
            assert_eq!(parse_answer_time(form), Some(expected), "{form}");
        }
        assert_eq!(parse_answer_time("yesterday"), None);
    }

    #[test]
    fn ids_cannot_leave_their_path_segment() {
        assert_eq!(
            path_segment("amcinj01/../amcother"),
            "amcinj01%2F%2E%2E%2Famcother"
        );
        assert_eq!(path_segment("a-b_c9"), "a-b_c9");
        assert_eq!(path_segment("x?y#z"), "x%3Fy%23z");
        assert!(!is_segment_id(".."));
        assert!(!is_segment_id(""));
        assert!(is_segment_id("e1"));
    }

    #[test]
    fn a_list_needs_a_filter_and_takes_only_amcs_forms() {
        let ok = ListFilter::parse([
            ("minCreationTime", "2025-01-06T00:00:00"),
            ("nextToken", ""),
        ]);
        assert_eq!(ok.unwrap().next_token, None);
        assert!(ListFilter::parse([("workflowId", "wf")]).is_ok());
        let refused =
            |params: &[(&str, &str)]| ListFilter::parse(params.iter().copied()).unwrap_err();
        assert!(refused(&[]).contains("either workflowId or minCreationTime"));
        assert!(refused(&[("minCreationTime", "2025-01-06T00:00:00Z")]).contains("suffix"));
        assert!(refused(&[("workflowId", "wf"), ("limit", "500")]).contains("limit"));
        assert!(refused(&[("workflowId", "wf"), ("colour", "red")]).contains("colour"));
    }

    #[test]
    fn an_unknown_status_word_reads_as_unknown_and_not_terminal() {
        assert_eq!(Status::parse("WARMING_UP"), Status::Unknown);
        assert!(!Status::Unknown.is_terminal());
        assert_eq!(Status::parse("REJECTED"), Status::Rejected);
    }

    #[test]
    fn every_explanation_amc_gives_ends_up_in_the_reason_once() {
        let execution: Execution = serde_json::from_value(serde_json::json!({
            "workflowExecutionId": "e1",
            "status": "FAILED",
            "failureReason": "out of memory",
            "statusReason": "out of memory",
            "details": "query too wide",
            "message": "see the query editor",
        }))
        .unwrap();
        assert_eq!(
            execution.reason().as_deref(),
            Some("out of memory; query too wide; see the query editor")
        );
    }
}
