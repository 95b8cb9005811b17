//! The built-in stand-in for AMC: an in-process [`Api`] plus a real HTTP server
//! for the reporting API, Login with Amazon's token endpoint and presigned
//! result URLs, with fault knobs and a ledger of everything it created (the
//! ground truth for tests). It does not own chronicle's client, retries or journal.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::io::{self, Write};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDateTime, SecondsFormat, SubsecRound, TimeZone, Utc};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::amc::{
    Api, ApiError, CreateExecution, ErrorBody, Execution, ExecutionPage, ListQuery, Status,
};

const CSV_HEADER: &str = "week_start,campaign_id,impressions,clicks";

/// How the simulated AMC behaves; every knob is a fault or timing a test needs.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Real executions take 15+ minutes; tests need milliseconds.
    pub execution_duration: Duration,
    /// Share of executions that end FAILED, to exercise failure handling.
    pub failure_rate: f64,
    /// Share of creates whose answer is lost after the execution exists: the
    /// "outcome unknown" case that adoption by listing must resolve.
    pub drop_create_rate: f64,
    /// Data rows per result, drawn per execution so re-downloads match.
    pub rows_per_result: RangeInclusive<u32>,
    /// AMC may hand back gzip files; the client must detect and inflate them.
    pub gzip_results: bool,
    /// Large results come as several files, each with its own header line.
    pub result_parts: u32,
    /// Small pages force callers to follow `nextToken`.
    pub list_page_size: usize,
    /// Short lifetimes exercise token refresh.
    pub token_lifetime: Duration,
    /// Makes ids, outcomes and result rows reproducible.
    pub seed: u64,
    /// The Login with Amazon client the token endpoint and API accept.
    pub client_id: String,
    /// Wrong secrets must be refused, so the client's auth errors are tested.
    pub client_secret: String,
    /// The long-lived token chronicle is configured with.
    pub refresh_token: String,
    /// Share of executions AMC refuses to run (REJECTED, with a reason).
    pub rejected_rate: f64,
    /// Live executions one instance accepts; a create beyond it is refused
    /// with 429 and recorded as a rule the client broke.
    pub concurrency_limit: usize,
    /// HTTP-level faults; changeable while serving (`set_faults`).
    pub faults: Faults,
}

/// Faults of the HTTP API, drawn per request. Rates are shares in 0..=1.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Share of API calls answered 429 with `Retry-After: retry_after_secs`.
    pub throttle_rate: f64,
    /// What a throttled caller is told to wait, in whole seconds.
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
    /// Result files are sent in 8 KiB pieces with this pause between them.
    pub slow_download: Duration,
    /// Every API call is answered this late, so client timeouts can fire.
    pub latency: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            execution_duration: Duration::from_secs(1),
            failure_rate: 0.0,
            drop_create_rate: 0.0,
            rows_per_result: 20..=200,
            gzip_results: false,
            result_parts: 1,
            list_page_size: 100,
            token_lifetime: Duration::from_secs(3600),
            seed: 0,
            client_id: "sim-client".into(),
            client_secret: "sim-secret".into(),
            refresh_token: "sim-refresh".into(),
            rejected_rate: 0.0,
            concurrency_limit: 10,
            faults: Faults::default(),
        }
    }
}

/// One execution the simulator created, whether or not the creator heard back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Executions live in one AMC instance; lookups elsewhere are 404.
    pub instance_id: String,
    /// The execution object as created (PENDING), before its status moved on.
    pub execution: Execution,
    /// The body exactly as received, so tests can find duplicate submissions.
    pub request: CreateExecution,
    /// The creator got no answer; only adoption can learn this execution's id.
    pub answer_dropped: bool,
}

/// One HTTP request the server received, for tests to assert on traffic.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestRecord {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// URI path without the query string.
    pub path: String,
    /// The query string, e.g. list filters and `nextToken`.
    pub query: String,
    /// The body of API calls (never of the token endpoint: it holds secrets).
    pub body: Option<String>,
    /// Status answered; 0 when the connection was dropped without an answer
    /// or the request was delayed by `Faults::latency` (recorded on arrival).
    pub status: u16,
}

/// The simulated AMC account: shared state behind an `Arc`, so clones given to
/// the server and to tests see the same executions.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    /// Fixed at creation, so it is read without the lock.
    config: SimConfig,
    /// Held only for short synchronous sections, never across an await.
    state: Mutex<SimState>,
}

struct SimState {
    /// In creation order; an index here is also a list paging cursor, which
    /// stays valid while new executions are created between pages.
    executions: Vec<Tracked>,
    /// Execution id to index in `executions`, for get and result files.
    by_id: HashMap<String, usize>,
    /// Issued access tokens and when they stop being accepted.
    tokens: HashMap<String, Instant>,
    /// What tests assert traffic on, e.g. that no create was repeated.
    requests: Vec<RequestRecord>,
    /// One seeded stream for ids, tokens and outcomes, so runs reproduce.
    rng: StdRng,
    /// Where result URLs point; known only once a listener is bound.
    base_url: Option<String>,
    /// The HTTP faults in force.
    faults: Faults,
    /// Throttled requests (method, URI and body) and until when their
    /// `Retry-After` asked the caller to wait before sending them again.
    throttled: HashMap<String, Instant>,
    /// Requests that broke the API's rules, described.
    violations: Vec<String>,
}

struct Tracked {
    /// What the ledger reports; its execution is the PENDING original.
    entry: LedgerEntry,
    /// Status is derived from time elapsed since this, so paused tokio time
    /// drives the lifecycle.
    created: Instant,
    /// Wall-clock creation, for `createTime`, `minCreationTime` and derived
    /// `lastUpdatedTime`; truncated to the milliseconds AMC reports.
    created_utc: DateTime<Utc>,
    /// Decided at creation so the outcome does not depend on polling order.
    end: Status,
    /// Set by a cancel while PENDING or RUNNING: the status from then on.
    cancelled: Option<DateTime<Utc>>,
    /// Kept RUNNING until cancelled (`Simulator::hold`), so a test can have
    /// an execution that is live for as long as it needs, whatever the
    /// machine's speed.
    held: bool,
}

impl Tracked {
    fn current(&self, duration: Duration, now: Instant) -> Execution {
        let mut execution = self.entry.execution.clone();
        if let Some(at) = self.cancelled {
            execution.status = Status::Cancelled;
            execution.last_updated_time = Some(timestamp(at));
            execution.status_reason = Some("cancelled by request".into());
            return execution;
        }
        if self.held {
            execution.status = Status::Running;
            return execution;
        }
        let elapsed = now.saturating_duration_since(self.created);
        // A rejection comes early: AMC refuses before running anything.
        let ends_after = if self.end == Status::Rejected {
            duration / 10
        } else {
            duration
        };
        let (status, since) = if elapsed >= ends_after {
            (self.end, ends_after)
        } else if elapsed >= duration / 10 {
            (Status::Running, duration / 10)
        } else {
            (Status::Pending, Duration::ZERO)
        };
        execution.status = status;
        let since = chrono::Duration::from_std(since).unwrap_or_default();
        execution.last_updated_time = Some(timestamp(self.created_utc + since));
        match status {
            Status::Failed => {
                execution.failure_reason =
                    Some("simulated failure: query ran out of memory".into());
            }
            Status::Rejected => {
                execution.status_reason =
                    Some("simulated rejection: the query failed validation".into());
            }
            _ => {}
        }
        execution
    }

    fn is_live(&self, duration: Duration, now: Instant) -> bool {
        !self.current(duration, now).status.is_terminal()
    }
}

impl Simulator {
    pub fn new(config: SimConfig) -> Simulator {
        let rng = StdRng::seed_from_u64(config.seed);
        let state = SimState {
            executions: Vec::new(),
            by_id: HashMap::new(),
            tokens: HashMap::new(),
            requests: Vec::new(),
            rng,
            base_url: None,
            faults: config.faults.clone(),
            throttled: HashMap::new(),
            violations: Vec::new(),
        };
        Simulator {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(state),
            }),
        }
    }

    /// Every execution ever created, in creation order, dropped answers included.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        let state = self.state();
        state.executions.iter().map(|t| t.entry.clone()).collect()
    }

    /// Every HTTP request received except reads of the ledger and this record.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().requests.clone()
    }

    /// Requests that broke the API's rules: over the concurrency limit,
    /// sooner than a `Retry-After`, API headers on a presigned URL, missing
    /// account headers, cancelling a finished execution. Empty for a
    /// well-behaved client.
    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }

    /// Every access token the token endpoint issued, so tests can look for
    /// them where they must not be.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state().tokens.keys().cloned().collect()
    }

    /// Forgets every issued access token, as if they had all expired: the
    /// next API call is answered 401.
    pub fn revoke_tokens(&self) {
        let now = Instant::now();
        for expiry in self.state().tokens.values_mut() {
            *expiry = now;
        }
    }

    /// Keeps execution `execution_id` RUNNING until it is cancelled.
    pub fn hold(&self, execution_id: &str) {
        let mut state = self.state();
        if let Some(&index) = state.by_id.get(execution_id) {
            state.executions[index].held = true;
        }
    }

    /// Changes the HTTP faults from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    /// Executions of `instance_id` still PENDING or RUNNING.
    pub fn live_executions(&self, instance_id: &str) -> usize {
        let duration = self.config().execution_duration;
        let now = Instant::now();
        let state = self.state();
        state
            .executions
            .iter()
            .filter(|t| t.entry.instance_id == instance_id && t.is_live(duration, now))
            .count()
    }

    /// Draws this API request's fault and checks that, if it repeats a
    /// throttled request, it came no sooner than `Retry-After` allowed.
    /// `request` is its method, URI and body: what makes it the same request.
    fn draw(&self, request: &str) -> Option<Fault> {
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
            state.throttled.insert(request.to_owned(), now + after);
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

    /// An execution as the HTTP API shows it under the current faults.
    fn execution_body(&self, mut execution: Execution) -> Response {
        let faults = self.state().faults.clone();
        if faults.novel_status && execution.status == Status::Running {
            execution.status = Status::Unknown;
        }
        if faults.wrapped_bodies {
            Json(serde_json::json!({ "workflowExecution": execution })).into_response()
        } else {
            Json(execution).into_response()
        }
    }

    fn violation(&self, what: String) {
        self.state().violations.push(what);
    }

    fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    // A panic while holding the lock leaves plain data behind, still usable.
    fn state(&self) -> MutexGuard<'_, SimState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn find<'a>(
        state: &'a SimState,
        instance_id: Option<&str>,
        execution_id: &str,
    ) -> Result<&'a Tracked, ApiError> {
        state
            .by_id
            .get(execution_id)
            .map(|&i| &state.executions[i])
            .filter(|t| instance_id.is_none_or(|id| t.entry.instance_id == id))
            .ok_or_else(|| refused(404, format!("execution {execution_id} not found")))
    }

    /// One part of a succeeded execution's CSV, or `None` if there is no such file.
    fn result_file(&self, execution_id: &str, part: u32) -> Option<Vec<u8>> {
        let config = self.config();
        let parts = config.result_parts.max(1);
        let week_start = {
            let state = self.state();
            let tracked = Self::find(&state, None, execution_id).ok()?;
            let done = tracked.current(config.execution_duration, Instant::now());
            if done.status != Status::Succeeded || part >= parts {
                return None;
            }
            let start = &tracked.entry.request.time_window_start;
            start.get(..10).unwrap_or(start).to_owned()
        };
        let rows = result_rows(config, execution_id, &week_start);
        let (n, part, parts) = (rows.len(), part as usize, parts as usize);
        let mut csv = format!("{CSV_HEADER}\n");
        for row in &rows[n * part / parts..n * (part + 1) / parts] {
            csv.push_str(row);
            csv.push('\n');
        }
        if !config.gzip_results {
            return Some(csv.into_bytes());
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(csv.as_bytes()).ok()?;
        gz.finish().ok()
    }

    /// Refuses an API call the way AMC does when its headers are not in order.
    fn refuse_headers(&self, headers: &HeaderMap) -> Option<Response> {
        let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let now = Instant::now();
        let token_ok = value("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.state().tokens.get(t).is_some_and(|&exp| exp > now));
        if !token_ok {
            let body = ErrorBody {
                message: Some("Unauthorized".into()),
                ..ErrorBody::default()
            };
            return Some((StatusCode::UNAUTHORIZED, Json(body)).into_response());
        }
        for name in [
            "Amazon-Advertising-API-ClientId",
            "Amazon-Advertising-API-AdvertiserId",
            "Amazon-Advertising-API-MarketplaceId",
        ] {
            if value(name).is_none_or(str::is_empty) {
                self.violation(format!("API call without header {name}"));
                return Some(refusal(400, format!("missing header {name}")));
            }
        }
        if value("Amazon-Advertising-API-ClientId") != Some(self.config().client_id.as_str()) {
            let details = "Amazon-Advertising-API-ClientId is not the client the token is for";
            return Some(refusal(403, details));
        }
        None
    }
}

fn refused(status: u16, message: impl Into<String>) -> ApiError {
    ApiError::Refused {
        status,
        message: message.into(),
        retry_after: None,
    }
}

fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The UTC window of a create body, or the 400 AMC answers to a bad one.
fn utc_window(request: &CreateExecution) -> Result<(String, String), ApiError> {
    let bad = |details: String| refused(400, details);
    if request.workflow_id.is_empty() {
        return Err(bad("workflowId must not be empty".into()));
    }
    if request.time_window_type != "EXPLICIT" {
        let kind = &request.time_window_type;
        return Err(bad(format!(
            "timeWindowType {kind:?} is not supported; use EXPLICIT"
        )));
    }
    let zone = &request.time_window_time_zone;
    let tz: chrono_tz::Tz = zone
        .parse()
        .map_err(|_| bad(format!("unknown timeWindowTimeZone {zone:?}")))?;
    let to_utc = |field: &str, value: &str| {
        let local = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f")
            .map_err(|e| bad(format!("{field} {value:?} is not YYYY-MM-DDTHH:MM:SS: {e}")))?;
        let utc = tz.from_local_datetime(&local).earliest();
        utc.map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| bad(format!("{field} {value:?} does not exist in {zone}")))
    };
    let start = to_utc("timeWindowStart", &request.time_window_start)?;
    let end = to_utc("timeWindowEnd", &request.time_window_end)?;
    if end <= start {
        return Err(bad("timeWindowEnd must be after timeWindowStart".into()));
    }
    let format = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    Ok((format(start), format(end)))
}

/// The data rows of one execution's result, the same on every download.
fn result_rows(config: &SimConfig, execution_id: &str, week_start: &str) -> Vec<String> {
    let digest = Sha256::digest(execution_id.as_bytes());
    let salt = digest
        .iter()
        .take(8)
        .fold(0u64, |acc, &b| acc << 8 | u64::from(b));
    let mut rng = StdRng::seed_from_u64(config.seed ^ salt);
    let (low, high) = config.rows_per_result.clone().into_inner();
    let count = rng.random_range(low..=high.max(low));
    (0..count)
        .map(|_| {
            let campaign = rng.random_range(0..1_000_000u32);
            let impressions = rng.random_range(0..100_000u32);
            let clicks = rng.random_range(0..=impressions / 20);
            format!("{week_start},cmp{campaign:06},{impressions},{clicks}")
        })
        .collect()
}

impl Api for Simulator {
    async fn create(
        &self,
        instance_id: &str,
        request: &CreateExecution,
    ) -> Result<Execution, ApiError> {
        let (start, end) = utc_window(request)?;
        let config = self.config();
        let created_utc = Utc::now().trunc_subsecs(3);
        let mut state = self.state();
        let id = uuid::Builder::from_random_bytes(state.rng.random()).into_uuid();
        let now = Instant::now();
        let live = state
            .executions
            .iter()
            .filter(|t| {
                t.entry.instance_id == instance_id && t.is_live(config.execution_duration, now)
            })
            .count();
        if live >= config.concurrency_limit {
            let limit = config.concurrency_limit;
            state.violations.push(format!(
                "create in instance {instance_id} with {live} executions live (limit {limit})"
            ));
            return Err(refused(
                429,
                format!("too many concurrent executions: {live} live, limit {limit}"),
            ));
        }
        let outcome = if state.rng.random_bool(config.rejected_rate.clamp(0.0, 1.0)) {
            Status::Rejected
        } else if state.rng.random_bool(config.failure_rate.clamp(0.0, 1.0)) {
            Status::Failed
        } else {
            Status::Succeeded
        };
        let dropped = state
            .rng
            .random_bool(config.drop_create_rate.clamp(0.0, 1.0));
        let execution = Execution {
            workflow_execution_id: id.to_string(),
            workflow_id: request.workflow_id.clone(),
            status: Status::Pending,
            create_time: Some(timestamp(created_utc)),
            last_updated_time: Some(timestamp(created_utc)),
            time_window_start: Some(start),
            time_window_end: Some(end),
            time_window_start_original: Some(request.time_window_start.clone()),
            time_window_end_original: Some(request.time_window_end.clone()),
            time_window_time_zone_original: Some(request.time_window_time_zone.clone()),
            status_reason: None,
            failure_reason: None,
            details: None,
            message: None,
        };
        let index = state.executions.len();
        state.by_id.insert(id.to_string(), index);
        state.executions.push(Tracked {
            entry: LedgerEntry {
                instance_id: instance_id.to_owned(),
                execution: execution.clone(),
                request: request.clone(),
                answer_dropped: dropped,
            },
            created: now,
            created_utc,
            end: outcome,
            cancelled: None,
            held: false,
        });
        if dropped {
            return Err(ApiError::OutcomeUnknown(
                "simulated: the answer to create was dropped".into(),
            ));
        }
        Ok(execution)
    }

    async fn get(&self, instance_id: &str, execution_id: &str) -> Result<Execution, ApiError> {
        let state = self.state();
        let tracked = Self::find(&state, Some(instance_id), execution_id)?;
        Ok(tracked.current(self.config().execution_duration, Instant::now()))
    }

    async fn list(&self, instance_id: &str, query: &ListQuery) -> Result<ExecutionPage, ApiError> {
        let config = self.config();
        let state = self.state();
        let before = match &query.next_token {
            None => state.executions.len(),
            Some(token) => token
                .parse()
                .ok()
                .filter(|&n| n <= state.executions.len())
                .ok_or_else(|| refused(400, format!("invalid nextToken {token:?}")))?,
        };
        let now = Instant::now();
        let mut matching = state.executions[..before]
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, t)| {
                t.entry.instance_id == instance_id
                    && (query.workflow_id.is_empty()
                        || t.entry.request.workflow_id == query.workflow_id)
                    && t.created_utc >= query.min_creation_time
            });
        let executions = matching
            .by_ref()
            .take(config.list_page_size.max(1))
            .map(|(_, t)| t.current(config.execution_duration, now))
            .collect();
        let next_token = matching.next().map(|(i, _)| (i + 1).to_string());
        Ok(ExecutionPage {
            executions,
            next_token,
        })
    }

    async fn download_urls(
        &self,
        instance_id: &str,
        execution_id: &str,
    ) -> Result<Vec<String>, ApiError> {
        let config = self.config();
        let state = self.state();
        let tracked = Self::find(&state, Some(instance_id), execution_id)?;
        let now = Instant::now();
        let status = tracked.current(config.execution_duration, now).status;
        let ready = tracked.created + config.execution_duration + state.faults.results_delay;
        if status != Status::Succeeded || now < ready {
            let status = status.as_str();
            let details = format!(
                "execution {execution_id} is {status}; results are unavailable for download"
            );
            return Err(refused(400, details));
        }
        let base = state.base_url.as_deref().ok_or_else(|| {
            ApiError::Unreachable("the simulator is not serving, so results have no URL".into())
        })?;
        let parts = config.result_parts.max(1);
        Ok((0..parts)
            .map(|part| format!("{base}/_sim/results/{execution_id}/{part}"))
            .collect())
    }

    async fn cancel(&self, instance_id: &str, execution_id: &str) -> Result<(), ApiError> {
        let duration = self.config().execution_duration;
        let mut state = self.state();
        let index = Self::find(&state, Some(instance_id), execution_id)
            .map(|_| state.by_id[execution_id])?;
        let status = state.executions[index]
            .current(duration, Instant::now())
            .status;
        if status.is_terminal() {
            let status = status.as_str();
            state.violations.push(format!(
                "cancel of execution {execution_id}, already {status}"
            ));
            return Err(refused(
                400,
                format!("execution {execution_id} is {status} and cannot be cancelled"),
            ));
        }
        state.executions[index].cancelled = Some(Utc::now().trunc_subsecs(3));
        Ok(())
    }
}

/// One request's simulated misfortune.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// 429 with this many seconds of `Retry-After`.
    Throttle(u64),
    ServerError(u16),
    /// 200 with the n-th kind of broken body.
    Malformed(u8),
}

impl Fault {
    fn response(self) -> Response {
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
struct AnswerDropped;

/// A response whose body fails at once: hyper then closes the connection
/// without writing the head, so the client sees the request sent and no answer.
fn dropped_answer() -> Response {
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

fn refusal(status: u16, details: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody {
        code: Some(status.as_u16().to_string()),
        details: Some(details.into()),
        message: None,
    };
    (status, Json(body)).into_response()
}

fn answer<T: Serialize>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(ApiError::Refused {
            status, message, ..
        }) => refusal(status, message),
        Err(ApiError::OutcomeUnknown(_)) => dropped_answer(),
        Err(other) => refusal(500, other.to_string()),
    }
}

/// Decodes an `application/x-www-form-urlencoded` body; axum's `Form` is not
/// compiled in.
fn form_fields(body: &[u8]) -> HashMap<String, String> {
    let decode = |text: &str| {
        let mut out = Vec::with_capacity(text.len());
        let mut rest = text.as_bytes();
        while let Some((&byte, tail)) = rest.split_first() {
            let escaped = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok());
            match (byte, escaped.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                (b'%', Some(decoded)) => {
                    out.push(decoded);
                    rest = &tail[2..];
                    continue;
                }
                (b'+', _) => out.push(b' '),
                _ => out.push(byte),
            }
            rest = tail;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

async fn http_token(State(sim): State<Simulator>, body: Bytes) -> Response {
    let form = form_fields(&body);
    let field = |name: &str| form.get(name).map_or("", String::as_str);
    let config = sim.config();
    let lwa_error = |error: &str, description: &str| {
        let body = serde_json::json!({"error": error, "error_description": description});
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    };
    if field("grant_type") != "refresh_token" {
        return lwa_error("unsupported_grant_type", "grant_type must be refresh_token");
    }
    if field("refresh_token") != config.refresh_token
        || field("client_id") != config.client_id
        || field("client_secret") != config.client_secret
    {
        let why = "The request has an invalid grant parameter: refresh_token or client credentials";
        return lwa_error("invalid_grant", why);
    }
    let token = {
        let mut state = sim.state();
        let token = format!("Atza|{}", hex::encode(state.rng.random::<[u8; 24]>()));
        let expiry = Instant::now() + config.token_lifetime;
        state.tokens.insert(token.clone(), expiry);
        token
    };
    let expires_in = config.token_lifetime.as_secs();
    Json(serde_json::json!({"access_token": token, "token_type": "bearer", "expires_in": expires_in}))
        .into_response()
}

async fn http_create(
    State(sim): State<Simulator>,
    uri: Uri,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = sim.refuse_headers(&headers) {
        return refusal;
    }
    let fault = sim.draw(&format!("POST {uri} {}", String::from_utf8_lossy(&body)));
    if let Some(throttled @ Fault::Throttle(_)) = fault {
        return throttled.response();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !content_type.is_some_and(|v| v.starts_with("application/json")) {
        return refusal(415, "Content-Type must be application/json");
    }
    let request = match serde_json::from_slice::<CreateExecution>(&body) {
        Ok(request) => request,
        Err(e) => return refusal(400, format!("invalid request body: {e}")),
    };
    match (sim.create(&instance, &request).await, fault) {
        (Ok(execution), Some(fault)) => {
            // Created, but the creator will not learn its id from this answer.
            let id = &execution.workflow_execution_id;
            let mut state = sim.state();
            if let Some(&index) = state.by_id.get(id) {
                state.executions[index].entry.answer_dropped = true;
            }
            fault.response()
        }
        (Ok(execution), None) => sim.execution_body(execution),
        (Err(e), _) => answer::<()>(Err(e)),
    }
}

/// What AMC answers a read or a cancel before looking at it: a refusal of
/// the account headers, else the drawn fault, if there is one.
fn screened(sim: &Simulator, headers: &HeaderMap, request: &str) -> Option<Response> {
    sim.refuse_headers(headers)
        .or_else(|| sim.draw(request).map(Fault::response))
}

async fn http_get(
    State(sim): State<Simulator>,
    uri: Uri,
    Path((instance, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(early) = screened(&sim, &headers, &format!("GET {uri}")) {
        return early;
    }
    match sim.get(&instance, &id).await {
        Ok(execution) => sim.execution_body(execution),
        Err(e) => answer::<()>(Err(e)),
    }
}

async fn http_cancel(
    State(sim): State<Simulator>,
    uri: Uri,
    Path((instance, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(early) = screened(&sim, &headers, &format!("PUT {uri}")) {
        return early;
    }
    let status = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned));
    if status.as_deref() != Some("CANCELLED") {
        sim.violation(format!(
            "PUT on execution {id} without {{\"status\":\"CANCELLED\"}}"
        ));
        return refusal(400, "the only status that can be set is CANCELLED");
    }
    match sim.cancel(&instance, &id).await {
        Ok(()) => match sim.get(&instance, &id).await {
            Ok(execution) => sim.execution_body(execution),
            Err(e) => answer::<()>(Err(e)),
        },
        Err(e) => answer::<()>(Err(e)),
    }
}

async fn http_download_urls(
    State(sim): State<Simulator>,
    uri: Uri,
    Path((instance, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(early) = screened(&sim, &headers, &format!("GET {uri}")) {
        return early;
    }
    let urls = sim.download_urls(&instance, &id).await;
    answer(urls.map(|download_urls| crate::amc::DownloadUrls { download_urls }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    /// Optional in AMC; absent lists every workflow.
    workflow_id: Option<String>,
    /// Kept as text so a bad value gets AMC's error body, not axum's.
    min_creation_time: Option<String>,
    /// Opaque to callers; an index into the creation order.
    next_token: Option<String>,
}

/// RFC 3339, or the same without an offset, which AMC reads as UTC.
fn parse_utc(text: &str) -> Option<DateTime<Utc>> {
    let naive = || NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f");
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| naive().map(|t| t.and_utc()))
        .ok()
}

async fn http_list(
    State(sim): State<Simulator>,
    uri: Uri,
    Path(instance): Path<String>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Response {
    if let Some(early) = screened(&sim, &headers, &format!("GET {uri}")) {
        return early;
    }
    let min_creation_time = match params.min_creation_time.as_deref() {
        None => DateTime::<Utc>::MIN_UTC,
        Some(text) => match parse_utc(text) {
            Some(time) => time,
            None => return refusal(400, format!("minCreationTime {text:?} is not a UTC time")),
        },
    };
    let query = ListQuery {
        workflow_id: params.workflow_id.unwrap_or_default(),
        min_creation_time,
        next_token: params.next_token,
    };
    answer(sim.list(&instance, &query).await)
}

async fn http_result(
    State(sim): State<Simulator>,
    Path((id, part)): Path<(String, u32)>,
    headers: HeaderMap,
) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        sim.violation(format!(
            "Authorization header sent to the presigned URL of {id}"
        ));
        let text = "InvalidArgument: Only one auth mechanism allowed; only the presigned \
                    query parameters or the Authorization header should be specified";
        return (StatusCode::BAD_REQUEST, text).into_response();
    }
    let content_type = if sim.config().gzip_results {
        "application/gzip"
    } else {
        "text/csv"
    };
    let pause = sim.state().faults.slow_download;
    match sim.result_file(&id, part) {
        Some(bytes) if pause.is_zero() => {
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Some(bytes) => {
            let pieces: Vec<Bytes> = Bytes::from(bytes)
                .chunks(8192)
                .map(Bytes::copy_from_slice)
                .collect();
            let stream = futures_util::stream::iter(pieces).then(move |piece| async move {
                tokio::time::sleep(pause).await;
                Ok::<_, io::Error>(piece)
            });
            (
                [(header::CONTENT_TYPE, content_type)],
                Body::from_stream(stream),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "NoSuchKey: no such result file").into_response(),
    }
}

async fn record(State(sim): State<Simulator>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    // API bodies are small JSON; the token endpoint's holds secrets.
    let (request, body) = if path.starts_with("/amc/") {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        let text = (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned());
        (Request::from_parts(parts, Body::from(bytes)), text)
    } else {
        (request, None)
    };
    let latency = sim.state().faults.latency;
    if !latency.is_zero() && path.starts_with("/amc/") {
        // Recorded on arrival: a client that gives up first drops the
        // connection, and this handler with it.
        sim.state().requests.push(RequestRecord {
            method,
            path,
            query,
            body,
            status: 0,
        });
        tokio::time::sleep(latency).await;
        return next.run(request).await;
    }
    let response = next.run(request).await;
    let status = match response.extensions().get::<AnswerDropped>() {
        Some(_) => 0,
        None => response.status().as_u16(),
    };
    sim.state().requests.push(RequestRecord {
        method,
        path,
        query,
        body,
        status,
    });
    response
}

fn router(sim: Simulator) -> Router {
    let executions = "/amc/reporting/{instance}/workflowExecutions";
    Router::new()
        .route("/auth/o2/token", post(http_token))
        .route(executions, post(http_create).get(http_list))
        .route(
            &format!("{executions}/{{id}}"),
            get(http_get).put(http_cancel),
        )
        .route(
            &format!("{executions}/{{id}}/downloadUrls"),
            get(http_download_urls),
        )
        .route("/_sim/results/{id}/{part}", get(http_result))
        .layer(middleware::from_fn_with_state(sim.clone(), record))
        // Added after the layer so reading the record does not grow it.
        .route(
            "/_sim/ledger",
            get(|State(sim): State<Simulator>| async move { Json(sim.ledger()) }),
        )
        .route(
            "/_sim/requests",
            get(|State(sim): State<Simulator>| async move { Json(sim.requests()) }),
        )
        .route(
            "/_sim/violations",
            get(|State(sim): State<Simulator>| async move { Json(sim.violations()) }),
        )
        .with_state(sim)
}

/// Sets the base URL before returning, so result URLs are right from the
/// first request even when the returned future is spawned and polled later.
fn serving(
    listener: TcpListener,
    simulator: Simulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<impl Future<Output = io::Result<()>> + Send> {
    simulator.state().base_url = Some(format!("http://{}", listener.local_addr()?));
    let server = axum::serve(listener, router(simulator)).with_graceful_shutdown(shutdown);
    Ok(server.into_future())
}

/// Serves the simulator on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    simulator: Simulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serving(listener, simulator, shutdown)?.await
}

/// A simulator serving on 127.0.0.1 in a background task.
pub struct RunningSimulator {
    /// What chronicle's AMC base URL is set to.
    pub base_url: String,
    /// What chronicle's Login with Amazon token URL is set to.
    pub token_url: String,
    /// The served state, for in-process assertions.
    pub simulator: Simulator,
    /// Triggers graceful shutdown; taken by `stop`.
    stop: Option<oneshot::Sender<()>>,
    /// The serving task; aborted on drop if `stop` was never awaited.
    task: Option<JoinHandle<io::Result<()>>>,
}

/// Binds 127.0.0.1 on a free port and serves `simulator` in a tokio task.
pub async fn spawn(simulator: Simulator) -> io::Result<RunningSimulator> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = serving(listener, simulator.clone(), async {
        // A dropped sender also means stop.
        let _ = stopped.await;
    })?;
    Ok(RunningSimulator {
        token_url: format!("{base_url}/auth/o2/token"),
        base_url,
        simulator,
        stop: Some(stop),
        task: Some(tokio::spawn(server)),
    })
}

impl RunningSimulator {
    /// Stops accepting, lets requests in flight finish, and waits for the server.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Method;
    use serde_json::{Value, json};
    use std::io::Read;

    const INSTANCE: &str = "amcinst1";
    // Refresh tokens carry characters the form encoding must round-trip.
    const REFRESH: &str = "Atzr|IwE+x/y=";

    struct Harness {
        running: RunningSimulator,
        http: reqwest::Client,
        token: String,
    }

    impl Harness {
        async fn start(config: SimConfig) -> Harness {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = SimConfig {
                refresh_token: REFRESH.into(),
                ..config
            };
            let running = spawn(Simulator::new(config)).await.expect("spawn");
            let mut h = Harness {
                running,
                http: reqwest::Client::new(),
                token: String::new(),
            };
            let (status, answer) = h.login("sim-secret").await;
            assert_eq!(status, 200, "{answer}");
            h.token = answer["access_token"].as_str().expect("token").to_owned();
            h
        }

        async fn login(&self, secret: &str) -> (u16, Value) {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", REFRESH),
                ("client_id", "sim-client"),
                ("client_secret", secret),
            ];
            let request = self.http.post(&self.running.token_url).form(&form);
            let response = request.send().await.expect("token request");
            (
                response.status().as_u16(),
                response.json().await.expect("json"),
            )
        }

        fn api(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
            let url = format!("{}/amc/reporting/{INSTANCE}{path}", self.running.base_url);
            self.http
                .request(method, url)
                .bearer_auth(&self.token)
                .header("Amazon-Advertising-API-ClientId", "sim-client")
                .header("Amazon-Advertising-API-AdvertiserId", "adv1")
                .header("Amazon-Advertising-API-MarketplaceId", "mkt1")
        }

        async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
            let response = request.send().await.expect("request");
            (
                response.status().as_u16(),
                response.json().await.expect("json"),
            )
        }

        async fn create(&self, workflow: &str, week: &str) -> Execution {
            let body = week_request(workflow, week);
            let request = self.api(Method::POST, "/workflowExecutions").json(&body);
            let (status, answer) = self.send(request).await;
            assert_eq!(status, 200, "{answer}");
            serde_json::from_value(answer).expect("execution")
        }

        async fn get(&self, path: &str) -> (u16, Value) {
            self.send(self.api(Method::GET, path)).await
        }
    }

    fn week_request(workflow: &str, week: &str) -> CreateExecution {
        let start = format!("{week}T00:00:00");
        let end = parse_utc(&start).expect("week") + chrono::Duration::days(7);
        CreateExecution {
            workflow_id: workflow.into(),
            time_window_type: "EXPLICIT".into(),
            time_window_start: start,
            time_window_end: end.format("%Y-%m-%dT%H:%M:%S").to_string(),
            time_window_time_zone: "UTC".into(),
            parameter_values: Default::default(),
        }
    }

    fn fast() -> SimConfig {
        SimConfig {
            // Long enough that a 5ms poll cannot miss RUNNING on a busy machine.
            execution_duration: Duration::from_millis(200),
            ..SimConfig::default()
        }
    }

    #[tokio::test]
    async fn token_endpoint_issues_and_refuses() {
        let h = Harness::start(fast()).await;
        assert!(h.token.starts_with("Atza|"));
        let (status, refused) = h.login("wrong").await;
        assert_eq!((status, &refused["error"]), (400, &json!("invalid_grant")));
        let (status, again) = h.login("sim-secret").await;
        assert_eq!((status, &again["token_type"]), (200, &json!("bearer")));
        assert_eq!(again["expires_in"], 3600);
        assert_ne!(again["access_token"], h.token.as_str());
        h.running.stop().await;
    }

    #[tokio::test]
    async fn execution_runs_to_succeeded_and_offers_results() {
        let h = Harness::start(fast()).await;
        let created = h.create("campaign_performance", "2025-01-06").await;
        assert_eq!(created.status, Status::Pending);
        assert_eq!(
            created.time_window_start.as_deref(),
            Some("2025-01-06T00:00:00Z")
        );
        assert!(created.answers(&week_request("campaign_performance", "2025-01-06")));
        let id = &created.workflow_execution_id;
        let urls_path = format!("/workflowExecutions/{id}/downloadUrls");
        let (status, early) = h.get(&urls_path).await;
        assert_eq!(status, 400);
        assert!(
            early["details"]
                .as_str()
                .unwrap()
                .contains("unavailable for download")
        );

        let deadline = Instant::now() + Duration::from_secs(3);
        let mut seen = Vec::new();
        let last = loop {
            let (status, body) = h.get(&format!("/workflowExecutions/{id}")).await;
            assert_eq!(status, 200, "{body}");
            let execution: Execution = serde_json::from_value(body).unwrap();
            seen.push(execution.status);
            if execution.status.is_terminal() {
                break execution;
            }
            assert!(
                Instant::now() < deadline,
                "still {:?} after 3s",
                execution.status
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(last.status, Status::Succeeded);
        assert!(last.last_updated_time > created.last_updated_time);
        assert!(seen.contains(&Status::Running), "{seen:?}");

        let (status, urls) = h.get(&urls_path).await;
        let expected = format!("{}/_sim/results/{id}/0", h.running.base_url);
        assert_eq!((status, urls), (200, json!({"downloadUrls": [expected]})));
        assert_eq!(h.get("/workflowExecutions/no-such-id").await.0, 404);
        h.running.stop().await;
    }

    #[tokio::test]
    async fn api_calls_check_headers_and_bodies() {
        let h = Harness::start(fast()).await;
        let url = format!(
            "{}/amc/reporting/{INSTANCE}/workflowExecutions",
            h.running.base_url
        );
        assert_eq!(h.send(h.http.get(&url)).await.0, 401);
        let no_advertiser = h
            .http
            .get(&url)
            .bearer_auth(&h.token)
            .header("Amazon-Advertising-API-ClientId", "sim-client")
            .header("Amazon-Advertising-API-MarketplaceId", "mkt1");
        let (status, body) = h.send(no_advertiser).await;
        assert_eq!(status, 400);
        assert!(
            body["details"]
                .as_str()
                .unwrap()
                .contains("Amazon-Advertising-API-AdvertiserId")
        );

        let not_json = h.api(Method::POST, "/workflowExecutions").body("{}");
        assert_eq!(h.send(not_json).await.0, 415);
        let mut relative = week_request("wf", "2025-01-06");
        relative.time_window_type = "MOST_RECENT_WEEK".into();
        let mut garbled = week_request("wf", "2025-01-06");
        garbled.time_window_end = "next tuesday".into();
        for body in [json!({"workflowId": "wf"}), json!(relative), json!(garbled)] {
            let request = h.api(Method::POST, "/workflowExecutions").json(&body);
            let (status, error) = h.send(request).await;
            assert_eq!((status, &error["code"]), (400, &json!("400")), "{body}");
        }
        assert!(h.running.simulator.ledger().is_empty());
        h.running.stop().await;

        let expired = SimConfig {
            token_lifetime: Duration::ZERO,
            ..fast()
        };
        let h = Harness::start(expired).await;
        let (status, body) = h.get("/workflowExecutions").await;
        assert_eq!((status, body), (401, json!({"message": "Unauthorized"})));
        h.running.stop().await;
    }

    #[tokio::test]
    async fn list_is_newest_first_and_paged() {
        let paged = SimConfig {
            list_page_size: 2,
            ..fast()
        };
        let h = Harness::start(paged).await;
        let mut created = Vec::new();
        for week in [
            "2025-01-06",
            "2025-01-13",
            "2025-01-20",
            "2025-01-27",
            "2025-02-03",
        ] {
            created.push(h.create("wf", week).await.workflow_execution_id);
            h.create("other", week).await;
        }
        created.reverse();
        let (mut listed, mut pages, mut next) = (Vec::new(), 0, None::<String>);
        loop {
            let mut path =
                "/workflowExecutions?workflowId=wf&minCreationTime=2020-01-01T00:00:00Z".to_owned();
            if let Some(token) = &next {
                path.push_str(&format!("&nextToken={token}"));
            }
            let (status, body) = h.get(&path).await;
            assert_eq!(status, 200, "{body}");
            let page: ExecutionPage = serde_json::from_value(body).unwrap();
            assert!(page.executions.len() <= 2);
            pages += 1;
            listed.extend(page.executions.into_iter().map(|e| e.workflow_execution_id));
            next = page.next_token;
            if next.is_none() {
                break;
            }
        }
        assert_eq!((listed, pages), (created, 3));
        let future = "/workflowExecutions?workflowId=wf&minCreationTime=2999-01-01T00:00:00";
        assert_eq!(h.get(future).await, (200, json!({"executions": []})));
        h.running.stop().await;
    }

    #[tokio::test]
    async fn results_refuse_authorization_and_serve_gzip_parts() {
        let h = Harness::start(SimConfig {
            execution_duration: Duration::ZERO,
            gzip_results: true,
            result_parts: 2,
            rows_per_result: 5..=9,
            ..fast()
        })
        .await;
        let created = h.create("wf", "2025-01-06").await;
        let path = format!(
            "/workflowExecutions/{}/downloadUrls",
            created.workflow_execution_id
        );
        let urls: crate::amc::DownloadUrls = serde_json::from_value(h.get(&path).await.1).unwrap();
        assert_eq!(urls.download_urls.len(), 2);

        let with_auth = h.http.get(&urls.download_urls[0]).bearer_auth(&h.token);
        let with_auth = with_auth.send().await.unwrap();
        assert_eq!(with_auth.status(), 400);
        assert!(
            with_auth
                .text()
                .await
                .unwrap()
                .contains("Only one auth mechanism allowed")
        );

        let mut rows = 0;
        for url in &urls.download_urls {
            let gz = h.http.get(url).send().await.unwrap().bytes().await.unwrap();
            let again = h.http.get(url).send().await.unwrap().bytes().await.unwrap();
            assert_eq!(gz, again, "a result must be the same on every download");
            let mut csv = String::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut csv)
                .unwrap();
            let mut lines = csv.lines();
            assert_eq!(lines.next(), Some(CSV_HEADER));
            for line in lines {
                assert!(line.starts_with("2025-01-06,cmp"), "{line}");
                rows += 1;
            }
        }
        assert!((5..=9).contains(&rows), "{rows} rows");
        h.running.stop().await;
    }

    #[tokio::test]
    async fn dropped_create_answer_still_creates() {
        let dropping = SimConfig {
            drop_create_rate: 1.0,
            ..fast()
        };
        let h = Harness::start(dropping).await;
        let body = week_request("wf", "2025-01-06");
        let sent = h
            .api(Method::POST, "/workflowExecutions")
            .json(&body)
            .send()
            .await;
        // No head at all: the client cannot tell whether the create happened.
        let error = sent.expect_err("the client must get no answer");
        assert!(error.is_request(), "{error:?}");

        let ledger_url = format!("{}/_sim/ledger", h.running.base_url);
        let ledger = h.http.get(ledger_url).send().await.unwrap();
        let ledger: Vec<LedgerEntry> = ledger.json().await.unwrap();
        assert_eq!(ledger.len(), 1);
        assert!(ledger[0].answer_dropped);
        assert_eq!(
            (ledger[0].instance_id.as_str(), &ledger[0].request),
            (INSTANCE, &body)
        );
        let id = &ledger[0].execution.workflow_execution_id;
        assert_eq!(h.get(&format!("/workflowExecutions/{id}")).await.0, 200);
        let requests = h.running.simulator.requests();
        let creates: Vec<_> = requests.iter().filter(|r| r.method == "POST").collect();
        // The token request, then the create that got no answer.
        assert_eq!(
            creates.iter().map(|r| r.status).collect::<Vec<_>>(),
            [200, 0]
        );
        h.running.stop().await;
    }

    #[tokio::test]
    async fn in_process_api_converts_zones_and_fails() {
        let sim = Simulator::new(SimConfig {
            execution_duration: Duration::ZERO,
            failure_rate: 1.0,
            ..SimConfig::default()
        });
        let mut request = week_request("wf", "2025-07-07");
        request.time_window_time_zone = "America/New_York".into();
        let created = sim.create(INSTANCE, &request).await.unwrap();
        assert_eq!(
            created.time_window_start.as_deref(),
            Some("2025-07-07T04:00:00Z")
        );
        assert_eq!(
            created.time_window_time_zone_original.as_deref(),
            Some("America/New_York")
        );
        let id = &created.workflow_execution_id;
        let done = sim.get(INSTANCE, id).await.unwrap();
        assert_eq!(done.status, Status::Failed);
        assert!(done.reason().is_some());
        let elsewhere = sim.get("elsewhere", id).await;
        assert!(matches!(
            elsewhere,
            Err(ApiError::Refused { status: 404, .. })
        ));
    }
}
