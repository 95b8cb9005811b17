//! The AMC reporting API over HTTPS (reqwest with rustls): the four account
//! headers, bearer tokens with one refresh on 401, transient failures retried
//! with exponential backoff and full jitter (`retry`), answers parsed flat or
//! wrapped, and anything else named as malformed.
//!
//! Owns single API calls. What an attempt does with them is the runner's.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

pub(crate) mod retry;
mod token;

use super::wire::{self, DownloadUrls, ErrorBody};
use super::{Api, ApiError, CreateExecution, Execution, ExecutionPage, ListQuery, Status};
use crate::settings::AmcSettings;
use crate::telemetry::counters;
use retry::{Gate, RetryPolicy, retry, retry_after};
use token::TokenSource;

/// Builds the HTTP client every outbound call shares: rustls with the
/// platform's roots, bounded waits so no call can hang an attempt. There is
/// no total timeout here: a large result may stream for a long time as long
/// as bytes keep coming; API calls set their own (`amc.request_timeout`).
pub fn http_client() -> reqwest::Client {
    // Installing twice is refused harmlessly; the first provider stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("chronicle/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with static settings always builds")
}

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `{base_url}/amc/reporting/` is the root of every call.
    base_url: String,
    tokens: TokenSource,
    client_id: String,
    advertiser_id: String,
    marketplace_id: String,
    /// Bounds on repeating a failed call (`amc.retry_*`).
    policy: RetryPolicy,
    /// Shared by every call, so a 429's `Retry-After` pauses them all.
    gate: Gate,
    /// Per API call; a hung connection is an unknown outcome, not a hang.
    request_timeout: Duration,
}

/// How a raw call failed before its body was looked at.
enum Failure {
    Api(ApiError),
    /// The token was refused: refresh once and ask again.
    Unauthorized,
}

impl Client {
    pub fn new(settings: &AmcSettings, http: reqwest::Client) -> Client {
        Client {
            inner: Arc::new(Inner {
                tokens: TokenSource::new(
                    http.clone(),
                    settings.token_url.clone(),
                    settings.client_id.clone(),
                    settings.client_secret.clone(),
                    settings.refresh_token.clone(),
                ),
                http,
                base_url: settings.base_url.trim_end_matches('/').to_owned(),
                client_id: settings.client_id.clone(),
                advertiser_id: settings.advertiser_id.clone(),
                marketplace_id: settings.marketplace_id.clone(),
                policy: settings.retry_policy(),
                gate: Gate::default(),
                request_timeout: settings.request_timeout,
            }),
        }
    }

    /// One call with one token refresh on 401.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, ApiError> {
        let answer = match self.call_once(method.clone(), path, query, body).await {
            Err(Failure::Unauthorized) => {
                counters::amc_request_error("unauthorized");
                match self.call_once(method, path, query, body).await {
                    Err(Failure::Unauthorized) => Err(ApiError::Refused {
                        status: 401,
                        message: "AMC refused a freshly refreshed access token".into(),
                        retry_after: None,
                    }),
                    Err(Failure::Api(e)) => Err(e),
                    Ok(bytes) => Ok(bytes),
                }
            }
            Err(Failure::Api(e)) => Err(e),
            Ok(bytes) => Ok(bytes),
        };
        if let Err(e) = &answer {
            counters::amc_request_error(e.class());
        }
        answer
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, Failure> {
        let inner = &self.inner;
        let _timed = counters::AMC_LATENCY.time();
        let token = inner.tokens.access_token().await.map_err(Failure::Api)?;
        let url = format!("{}/amc/reporting/{path}", inner.base_url);
        let mut request = inner
            .http
            .request(method.clone(), &url)
            .bearer_auth(token.expose_secret())
            .header(wire::CLIENT_ID_HEADER, &inner.client_id)
            .header(wire::ADVERTISER_ID_HEADER, &inner.advertiser_id)
            .header(wire::MARKETPLACE_ID_HEADER, &inner.marketplace_id)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(inner.request_timeout)
            .query(query);
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        // Again here: a 429 may have come in while this call waited for a token.
        inner.gate.wait().await;
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Api(send_error(e)))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Failure::Api(ApiError::OutcomeUnknown(e.without_url().to_string())))?;
        if status == StatusCode::UNAUTHORIZED {
            inner.tokens.invalidate(&token).await;
            return Err(Failure::Unauthorized);
        }
        // A create answers 200 or 202 (`wire::is_create_success`); every
        // other 2xx is read as an answer too, since its body decides.
        if !status.is_success() {
            return Err(Failure::Api(ApiError::Refused {
                status: status.as_u16(),
                message: error_text(&bytes),
                retry_after,
            }));
        }
        Ok(bytes.to_vec())
    }

    /// Retries what is safe to repeat: every read, and a create that
    /// provably did not reach AMC (429, connection refused). A create that
    /// got a 5xx or no answer is not repeated here: it may exist, and the
    /// runner settles that by listing (I2).
    async fn retried<T, F, Fut>(&self, what: &str, idempotent: bool, call: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let inner = &self.inner;
        retry(
            &inner.policy,
            &inner.gate,
            what,
            move |e| match e {
                ApiError::Refused { status: 429, .. } | ApiError::Unreachable(_) => true,
                other => idempotent && other.is_transient(),
            },
            call,
        )
        .await
    }
}

/// `{instance}/workflowExecutions`, the instance percent-encoded as one
/// path segment: no id can reach another instance's executions.
fn executions_path(instance_id: &str) -> Result<String, ApiError> {
    if !wire::is_segment_id(instance_id) {
        return Err(ApiError::Refused {
            status: 400,
            message: format!("instance id {instance_id:?} cannot name an AMC instance"),
            retry_after: None,
        });
    }
    Ok(format!(
        "{}/workflowExecutions",
        wire::path_segment(instance_id)
    ))
}

/// `{instance}/workflowExecutions/{execution}`; an execution id comes from
/// AMC's answers, so one that cannot be a path segment is malformed.
fn execution_path(instance_id: &str, execution_id: &str) -> Result<String, ApiError> {
    if !wire::is_segment_id(execution_id) {
        return Err(ApiError::Malformed(format!(
            "execution id {execution_id:?} cannot name an execution"
        )));
    }
    Ok(format!(
        "{}/{}",
        executions_path(instance_id)?,
        wire::path_segment(execution_id)
    ))
}

fn send_error(error: reqwest::Error) -> ApiError {
    let connect = error.is_connect();
    let text = error.without_url().to_string();
    if connect {
        ApiError::Unreachable(text)
    } else {
        ApiError::OutcomeUnknown(text)
    }
}

/// AMC's message from either error shape, or the start of whatever came
/// back (an HTML page from a gateway, say).
fn error_text(bytes: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) if !body.text().is_empty() => body.text(),
        _ => {
            let text = String::from_utf8_lossy(bytes);
            let text = text.trim();
            if text.is_empty() {
                "no details given".to_owned()
            } else {
                text.chars().take(200).collect()
            }
        }
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let start: String = String::from_utf8_lossy(bytes).chars().take(80).collect();
        ApiError::Malformed(format!("{what}: {e} (answer began: {start:?})"))
    })
}

/// Accepts the flat execution object and `{"workflowExecution":{...}}`.
fn parse_execution(bytes: &[u8]) -> Result<Execution, ApiError> {
    let value: serde_json::Value = parse(bytes, "execution")?;
    let object = match value.get("workflowExecution") {
        Some(inner) => inner.clone(),
        None => value,
    };
    if let Some(word) = object.get("status").and_then(|s| s.as_str()) {
        note_status_word(word);
    }
    serde_json::from_value(object)
        .map_err(|e| ApiError::Malformed(format!("execution object: {e}")))
}

/// A status word this build does not know is read as still running; it is
/// logged the first time it is seen, not at every poll.
fn note_status_word(word: &str) {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    if Status::parse(word) != Status::Unknown {
        return;
    }
    let seen = SEEN.get_or_init(Mutex::default);
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    if seen.insert(word.to_owned()) {
        tracing::warn!(
            status = word,
            "AMC reported a status this version does not know; treating the execution as still running"
        );
    }
}

impl Api for Client {
    async fn create(
        &self,
        instance_id: &str,
        request: &CreateExecution,
    ) -> Result<Execution, ApiError> {
        let body = serde_json::to_value(request)
            .map_err(|e| ApiError::Malformed(format!("create body: {e}")))?;
        let path = executions_path(instance_id)?;
        let bytes = self
            .retried("create", false, || {
                self.call(Method::POST, &path, &[], Some(&body))
            })
            .await?;
        parse_execution(&bytes)
    }

    async fn get(&self, instance_id: &str, execution_id: &str) -> Result<Execution, ApiError> {
        let path = execution_path(instance_id, execution_id)?;
        let bytes = self
            .retried("get", true, || self.call(Method::GET, &path, &[], None))
            .await?;
        parse_execution(&bytes)
    }

    async fn list(&self, instance_id: &str, query: &ListQuery) -> Result<ExecutionPage, ApiError> {
        let path = executions_path(instance_id)?;
        // An empty workflow id lists every workflow: how executions
        // chronicle did not start are found.
        let params = query.params();
        let bytes = self
            .retried("list", true, || {
                self.call(Method::GET, &path, &params, None)
            })
            .await?;
        parse(&bytes, "execution list")
    }

    async fn download_urls(
        &self,
        instance_id: &str,
        execution_id: &str,
    ) -> Result<Vec<String>, ApiError> {
        let path = format!(
            "{}/downloadUrls",
            execution_path(instance_id, execution_id)?
        );
        let bytes = self
            .retried("downloadUrls", true, || {
                self.call(Method::GET, &path, &[], None)
            })
            .await?;
        Ok(parse::<DownloadUrls>(&bytes, "download URLs")?.download_urls)
    }

    async fn cancel(&self, instance_id: &str, execution_id: &str) -> Result<(), ApiError> {
        let path = execution_path(instance_id, execution_id)?;
        let body = serde_json::to_value(wire::CancelBody {
            status: Status::Cancelled,
        })
        .map_err(|e| ApiError::Malformed(format!("cancel body: {e}")))?;
        // Asking twice for the same end state is harmless, so it is retried
        // like a read.
        self.retried("cancel", true, || {
            self.call(Method::PUT, &path, &[], Some(&body))
        })
        .await?;
        Ok(())
    }
}
