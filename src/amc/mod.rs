//! The shape of the AMC reporting API, shared by the HTTP client that talks to
//! Amazon and by the built-in simulator that stands in for it.
//!
//! Owns the wire types (execution objects, create bodies, list pages), the
//! error classes callers act on, and the [`Api`] trait. It does not own
//! retries across attempts, the journal, or the download of result files.

pub mod client;
pub mod result;
pub mod simulator;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    /// Always `EXPLICIT`: chronicle sends calendar weeks, never AMC's
    /// relative windows, so a retry asks for exactly the same data.
    pub time_window_type: String,
    /// Local wall time in `time_window_time_zone`, `YYYY-MM-DDT00:00:00`.
    pub time_window_start: String,
    pub time_window_end: String,
    pub time_window_time_zone: String,
    #[serde(default)]
    pub parameter_values: BTreeMap<String, String>,
}

/// The execution object AMC answers with (flat form; the wrapped form is
/// unwrapped by the client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub workflow_execution_id: String,
    #[serde(default)]
    pub workflow_id: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_time: Option<String>,
    /// UTC, `...Z`.
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

    /// Whether this execution was created from `request`: same workflow and
    /// the same explicit window, as sent.
    pub fn answers(&self, request: &CreateExecution) -> bool {
        self.workflow_id == request.workflow_id
            && self.time_window_start_original.as_deref()
                == Some(request.time_window_start.as_str())
            && self.time_window_end_original.as_deref() == Some(request.time_window_end.as_str())
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

/// Filters of `GET /workflowExecutions`.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Empty lists the executions of every workflow.
    pub workflow_id: String,
    pub min_creation_time: DateTime<Utc>,
    pub next_token: Option<String>,
}

/// `GET /workflowExecutions/{id}/downloadUrls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadUrls {
    pub download_urls: Vec<String>,
}

/// AMC's error body: `{"code":..,"details":..}` or `{"message":..}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorBody {
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

/// What went wrong talking to AMC, sorted by what the caller must do next.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// AMC answered and refused; `retry_after` is set for 429.
    #[error("AMC answered HTTP {status}: {message}")]
    Refused {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The request may have been carried out: it was sent and no answer came.
    #[error("no answer from AMC after sending the request: {0}")]
    OutcomeUnknown(String),
    /// The request never left: nothing happened in AMC.
    #[error("could not reach AMC: {0}")]
    Unreachable(String),
    /// AMC answered something that is not the documented shape.
    #[error("malformed answer from AMC: {0}")]
    Malformed(String),
    /// Login with Amazon refused the credentials.
    #[error("Login with Amazon refused the credentials: {0}")]
    Auth(String),
}

impl ApiError {
    /// A stable name for the kind of failure, for logs and metrics labels:
    /// `throttled`, `server`, `client`, `unauthorized`, `no_answer`,
    /// `unreachable`, `malformed`, `auth`.
    pub fn class(&self) -> &'static str {
        match self {
            ApiError::Refused { status: 429, .. } => "throttled",
            ApiError::Refused { status: 401, .. } => "unauthorized",
            ApiError::Refused { status, .. } if *status >= 500 => "server",
            ApiError::Refused { .. } => "client",
            ApiError::OutcomeUnknown(_) => "no_answer",
            ApiError::Unreachable(_) => "unreachable",
            ApiError::Malformed(_) => "malformed",
            ApiError::Auth(_) => "auth",
        }
    }

    /// AMC says the result exists but cannot be fetched yet: ask again later.
    pub fn is_result_pending(&self) -> bool {
        matches!(self, ApiError::Refused { status, message, .. }
            if *status < 500 && message.contains("unavailable for download"))
    }

    /// Worth asking again later with the same request.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Refused { status, .. } => *status == 429 || *status >= 500,
            ApiError::OutcomeUnknown(_) | ApiError::Unreachable(_) => true,
            ApiError::Malformed(_) | ApiError::Auth(_) => false,
        }
    }
}

/// The AMC reporting API for one advertiser account. Implemented by the HTTP
/// [`client::Client`] and by the [`crate::amc::simulator::Simulator`].
pub trait Api: Send + Sync {
    fn create(
        &self,
        instance_id: &str,
        request: &CreateExecution,
    ) -> impl Future<Output = Result<Execution, ApiError>> + Send;

    fn get(
        &self,
        instance_id: &str,
        execution_id: &str,
    ) -> impl Future<Output = Result<Execution, ApiError>> + Send;

    fn list(
        &self,
        instance_id: &str,
        query: &ListQuery,
    ) -> impl Future<Output = Result<ExecutionPage, ApiError>> + Send;

    fn download_urls(
        &self,
        instance_id: &str,
        execution_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, ApiError>> + Send;

    /// `PUT /workflowExecutions/{id}` with `{"status":"CANCELLED"}`; AMC
    /// accepts it only while the execution is PENDING or RUNNING.
    fn cancel(
        &self,
        instance_id: &str,
        execution_id: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_unknown_status_word_reads_as_unknown_and_not_terminal() {
        assert_eq!(Status::parse("WARMING_UP"), Status::Unknown);
        assert!(!Status::Unknown.is_terminal());
        assert_eq!(Status::parse("REJECTED"), Status::Rejected);
    }
}
