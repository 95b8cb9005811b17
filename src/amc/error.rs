//! What went wrong talking to AMC, sorted by what the caller must do next:
//! the one error type of the AMC boundary, with the retry decision in it.
//!
//! Owns the classes and their stable names; not the retrying (see
//! `client::retry`) nor what an attempt does about a failure (the runner).

use std::time::Duration;

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
