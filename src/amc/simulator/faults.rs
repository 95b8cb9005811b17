//! The simulator's fault knobs ([`Faults`], changeable while serving), the
//! draw of one request's fault, and the responses AMC gives: its kind of
//! error body, throttling with `Retry-After`, gateway pages, garbled 200s
//! and answers dropped after the work was done.
//!
//! Owns what goes wrong and how it looks on the wire; not the API's rules
//! (`mod.rs`, `http.rs`) nor result files (`results.rs`).

use std::io;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::RngExt;
use serde::Serialize;
use tokio::time::Instant;

use super::Simulator;
use crate::amc::ApiError;
use crate::amc::wire::ErrorBody;

/// Faults of the HTTP API, drawn per request. Rates are shares in 0..=1.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Share of API calls answered 429 with `Retry-After: retry_after_secs`.
    pub throttle_rate: f64,
    /// What a throttled caller is told to wait, in whole seconds; any u64
    /// is sent as it is, `u64::MAX` included, as a hostile server would.
    pub retry_after_secs: u64,
    /// Share of API calls answered 500/502/503/504. A create so answered
    /// was carried out first, like a gateway timing out behind AMC's back.
    pub server_error_rate: f64,
    /// Share of API calls answered 200 with a body that is not the
    /// documented shape (not JSON, a gateway's HTML, missing or mistyped
    /// fields). A create so answered was carried out first.
    pub malformed_rate: f64,
    /// Execution objects come as `{"workflowExecution":{...}}`.
    pub wrapped_bodies: bool,
    /// Running executions report a status word no client knows yet.
    pub novel_status: bool,
    /// After SUCCEEDED, result links are "unavailable for download" this long.
    pub results_delay: Duration,
    /// The next this many result-link answers of SUCCEEDED executions are
    /// `{"downloadUrls":[]}`, as if the files were not written yet.
    pub empty_download_urls: u32,
    /// Result files are sent in 8 KiB pieces with this pause between them.
    pub slow_download: Duration,
    /// Every API call is answered this late, so client timeouts can fire.
    pub latency: Duration,
    /// The token endpoint answers this `expires_in` instead of the real
    /// lifetime (up to 1.8e19, to prove no client arithmetic overflows).
    pub token_expires_in: Option<u64>,
    /// Every list page answers the same `nextToken` again: a client that
    /// follows it blindly never stops.
    pub looping_next_token: bool,
}

/// One request's simulated misfortune.
#[derive(Clone, Copy, Debug)]
pub(super) enum Fault {
    /// 429 with this many seconds of `Retry-After`.
    Throttle(u64),
    ServerError(u16),
    /// 200 with the n-th kind of broken body.
    Malformed(u8),
}

impl Simulator {
    /// Draws this API request's fault and checks that, if it repeats a
    /// throttled request, it came no sooner than `Retry-After` allowed.
    /// `request` is its method, URI and body: what makes it the same request.
    pub(super) fn draw(&self, request: &str) -> Option<Fault> {
        let now = Instant::now();
        let mut state = self.state();
        if let Some(&until) = state.throttled.get(request).filter(|&&until| now < until) {
            let early = until - now;
            state.violations.push(format!(
                "{request} repeated {early:?} before its Retry-After allowed"
            ));
        }
        let faults = state.faults.clone();
        let rng = &mut state.rng;
        if rng.random_bool(faults.throttle_rate.clamp(0.0, 1.0)) {
            let after = Duration::from_secs(faults.retry_after_secs);
            // A wait past the clock's end is a wait for ever.
            if let Some(until) = now.checked_add(after) {
                state.throttled.insert(request.to_owned(), until);
            }
            Some(Fault::Throttle(faults.retry_after_secs))
        } else if rng.random_bool(faults.server_error_rate.clamp(0.0, 1.0)) {
            let status = [500, 502, 503, 504][rng.random_range(0..4usize)];
            Some(Fault::ServerError(status))
        } else if rng.random_bool(faults.malformed_rate.clamp(0.0, 1.0)) {
            Some(Fault::Malformed(rng.random_range(0..4u8)))
        } else {
            None
        }
    }
}

impl Fault {
    pub(super) fn response(self) -> Response {
        match self {
            Fault::Throttle(secs) => {
                let mut response = refusal(429, "Too Many Requests");
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
                response
            }
            Fault::ServerError(502) => (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response(),
            Fault::ServerError(status) => refusal(status, "simulated server error"),
            Fault::Malformed(kind) => {
                let (content_type, body) = match kind {
                    0 => ("text/plain", "Internal hiccup, please try later".to_owned()),
                    1 => (
                        "text/html",
                        "<!DOCTYPE html><html><body>Gateway says hello</body></html>".to_owned(),
                    ),
                    2 => ("application/json", r#"{"unexpected":true}"#.to_owned()),
                    _ => (
                        "application/json",
                        r#"{"workflowExecutionId":12345,"status":["RUNNING"],"executions":7,"downloadUrls":{"a":1}}"#
                            .to_owned(),
                    ),
                };
                ([(header::CONTENT_TYPE, content_type)], body).into_response()
            }
        }
    }
}

/// Marks a response the client must never see, so the request log says 0.
#[derive(Clone)]
pub(super) struct AnswerDropped;

/// A response whose body fails at once: hyper then closes the connection
/// without writing the head, so the client sees the request sent and no answer.
pub(super) fn dropped_answer() -> Response {
    let failure = io::Error::new(io::ErrorKind::ConnectionAborted, "simulated dropped answer");
    let body = futures_util::stream::iter([Err::<Bytes, _>(failure)]);
    let mut response = Response::new(Body::from_stream(body));
    // Should a head ever slip out, the promised length still makes it truncated.
    let length = header::HeaderValue::from_static("4096");
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, length);
    response.extensions_mut().insert(AnswerDropped);
    response
}

/// AMC's kind of refusal: `{"code":"400","details":"..."}`.
pub(super) fn refusal(status: u16, details: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody {
        code: Some(status.as_u16().to_string()),
        details: Some(details.into()),
        message: None,
    };
    (status, Json(body)).into_response()
}

/// The HTTP form of an in-process answer.
pub(super) fn answer<T: Serialize>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(ApiError::Refused {
            status, message, ..
        }) => refusal(status, message),
        Err(ApiError::OutcomeUnknown(_)) => dropped_answer(),
        Err(other) => refusal(500, other.to_string()),
    }
}
