//! The built-in stand-in for AMC: the [`Simulator`] handle, its state (the
//! executions it created, issued tokens, the request record, the rules a
//! client broke) and the in-process [`Api`] over that state.
//!
//! The HTTP server is `http`, the fault knobs and their responses `faults`,
//! the result files `results`. Requests are checked against the same wire
//! rules the client writes with (`amc::wire`), so what AMC refuses is
//! refused here too. It does not own chronicle's client, retries or journal.

mod faults;
mod http;
mod results;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::amc::{Api, ApiError, CreateExecution, Execution, ExecutionPage, ListQuery, Status};

pub use faults::Faults;
pub use http::{RequestRecord, RunningSimulator, serve, spawn};

/// How the simulated AMC behaves; every knob is a fault, timing or result
/// form a test needs.
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
    /// Gzip members per result file (with `gzip_results`): concatenating
    /// writers produce files of several members, all of which are the data.
    pub gzip_members: u32,
    /// Large results come as several files, each with its own header line.
    pub result_parts: u32,
    /// Adds a text column whose quoted values hold commas, quotes and line
    /// breaks: a CSV record is not a line.
    pub quoted_line_breaks: bool,
    /// Each file ends with a line break after its last record; when false,
    /// none does, as some writers leave it.
    pub trailing_newline: bool,
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
    /// Execution objects leave out `parameterValues`, for the adoption rule
    /// that must then match on what they do show.
    pub omit_parameter_values: bool,
    /// What a successful create answers: AMC answers 200 or 202.
    pub create_status: u16,
    /// HTTP-level faults; changeable while serving (`set_faults`).
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            execution_duration: Duration::from_secs(1),
            failure_rate: 0.0,
            drop_create_rate: 0.0,
            rows_per_result: 20..=200,
            gzip_results: false,
            gzip_members: 1,
            result_parts: 1,
            quoted_line_breaks: false,
            trailing_newline: true,
            list_page_size: 100,
            token_lifetime: Duration::from_secs(3600),
            seed: 0,
            client_id: "sim-client".into(),
            client_secret: "sim-secret".into(),
            refresh_token: "sim-refresh".into(),
            rejected_rate: 0.0,
            concurrency_limit: 10,
            omit_parameter_values: false,
            create_status: 200,
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

    /// Requests that broke the API's rules: every request AMC refuses for
    /// its form (times, headers, bodies, list filters), over the concurrency
    /// limit, sooner than a `Retry-After`, API headers on a presigned URL,
    /// cancelling a finished execution. Empty for a well-behaved client.
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

    /// The whole result of execution `execution_id` as one CSV: the header
    /// once, then every record, exactly what a client that joins the parts
    /// must checksum. `None` before it SUCCEEDED.
    pub fn result_csv(&self, execution_id: &str) -> Option<Vec<u8>> {
        let week_start = self.succeeded_week(execution_id)?;
        Some(results::whole(self.config(), execution_id, &week_start))
    }

    /// The data records of that result (the header not counted).
    pub fn result_records(&self, execution_id: &str) -> Option<u64> {
        let week_start = self.succeeded_week(execution_id)?;
        Some(results::rows(self.config(), execution_id, &week_start).len() as u64)
    }

    /// The week a SUCCEEDED execution's rows are about, the seed of its rows.
    fn succeeded_week(&self, execution_id: &str) -> Option<String> {
        let config = self.config();
        let state = self.state();
        let tracked = Self::find(&state, None, execution_id).ok()?;
        let done = tracked.current(config.execution_duration, Instant::now());
        if done.status != Status::Succeeded {
            return None;
        }
        let start = &tracked.entry.request.time_window_start;
        Some(start.get(..10).unwrap_or(start).to_owned())
    }

    fn violation(&self, what: String) {
        self.state().violations.push(what);
    }

    /// The Login with Amazon credentials it accepts: client id, client
    /// secret and refresh token.
    pub fn credentials(&self) -> (&str, &str, &str) {
        let config = self.config();
        (
            &config.client_id,
            &config.client_secret,
            &config.refresh_token,
        )
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

    /// An execution as AMC shows it: `parameterValues` left out when the
    /// configuration says AMC does not echo them.
    fn shown(&self, mut execution: Execution) -> Execution {
        if self.config().omit_parameter_values {
            execution.parameter_values = None;
        }
        execution
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

/// The UTC window of a create body, or the 400 AMC answers to a bad one:
/// the wire rules (`CreateExecution::check`), then the zone.
fn utc_window(request: &CreateExecution) -> Result<(String, String), ApiError> {
    let bad = |details: String| refused(400, details);
    let (start, end) = request.check().map_err(bad)?;
    let zone = &request.time_window_time_zone;
    let tz: chrono_tz::Tz = zone
        .parse()
        .map_err(|_| bad(format!("unknown timeWindowTimeZone {zone:?}")))?;
    let to_utc = |field: &str, local| {
        let utc = tz.from_local_datetime(&local).earliest();
        utc.map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| bad(format!("{field} {local} does not exist in {zone}")))
    };
    let start = to_utc("timeWindowStart", start)?;
    let end = to_utc("timeWindowEnd", end)?;
    let format = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    Ok((format(start), format(end)))
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
            parameter_values: Some(
                request
                    .parameter_values
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect(),
            ),
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
        drop(state);
        if dropped {
            return Err(ApiError::OutcomeUnknown(
                "simulated: the answer to create was dropped".into(),
            ));
        }
        Ok(self.shown(execution))
    }

    async fn get(&self, instance_id: &str, execution_id: &str) -> Result<Execution, ApiError> {
        let execution = {
            let state = self.state();
            let tracked = Self::find(&state, Some(instance_id), execution_id)?;
            tracked.current(self.config().execution_duration, Instant::now())
        };
        Ok(self.shown(execution))
    }

    async fn list(&self, instance_id: &str, query: &ListQuery) -> Result<ExecutionPage, ApiError> {
        let config = self.config();
        let state = self.state();
        let before = match query.next_token.as_deref().filter(|t| !t.is_empty()) {
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
        let executions: Vec<Execution> = matching
            .by_ref()
            .take(
                config
                    .list_page_size
                    .clamp(1, crate::amc::wire::LIST_PAGE_LIMIT),
            )
            .map(|(_, t)| t.current(config.execution_duration, now))
            .collect();
        let next_token = matching.next().map(|(i, _)| (i + 1).to_string());
        drop(state);
        Ok(ExecutionPage {
            executions: executions.into_iter().map(|e| self.shown(e)).collect(),
            next_token,
        })
    }

    async fn download_urls(
        &self,
        instance_id: &str,
        execution_id: &str,
    ) -> Result<Vec<String>, ApiError> {
        let config = self.config();
        let mut state = self.state();
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
        if state.faults.empty_download_urls > 0 {
            state.faults.empty_download_urls -= 1;
            return Ok(Vec::new());
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
