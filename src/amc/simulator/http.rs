//! The simulator as a real HTTP server (axum): the reporting API, Login with
//! Amazon's token endpoint and presigned result URLs, the middleware that
//! records every request, and [`spawn`]/[`serve`].
//!
//! Every request is checked against the wire rules (`amc::wire`) before
//! anything happens: AMC's refusals (HTTP 400 with `{"code","details"}`,
//! 401, 415) are given here and recorded as violations. What a request then
//! does is the in-process `Api` of `mod.rs`; faults come from `faults.rs`.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::io;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::faults::{AnswerDropped, Fault, answer, refusal};
use super::{Simulator, results};
use crate::amc::wire::{self, CancelBody, CreateExecution, DownloadUrls, ErrorBody, ListFilter};
use crate::amc::{Api, ListQuery, Status};

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

impl Simulator {
    /// Refuses a request AMC refuses for its form, recording the rule it
    /// broke: AMC's 400 body with `details`.
    fn refuse(&self, status: u16, details: String) -> Response {
        self.violation(details.clone());
        refusal(status, details)
    }

    /// Refuses an API call the way AMC does when its headers are not in order.
    fn refuse_headers(&self, headers: &HeaderMap) -> Option<Response> {
        let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let Some(bearer) = value("authorization") else {
            self.violation("API call without an Authorization header".into());
            return Some(unauthorized());
        };
        let now = Instant::now();
        let token_ok = bearer
            .strip_prefix("Bearer ")
            .is_some_and(|t| self.state().tokens.get(t).is_some_and(|&exp| exp > now));
        if !token_ok {
            // An expired token is normal: the client refreshes and asks again.
            return Some(unauthorized());
        }
        for name in wire::ACCOUNT_HEADERS {
            if value(name).is_none_or(str::is_empty) {
                return Some(self.refuse(400, format!("API call without header {name}")));
            }
        }
        if value(wire::CLIENT_ID_HEADER) != Some(self.config().client_id.as_str()) {
            let details = "Amazon-Advertising-API-ClientId is not the client the token is for";
            return Some(refusal(403, details));
        }
        if !value(header::CONTENT_TYPE.as_str()).is_some_and(|v| v.starts_with("application/json"))
        {
            self.violation("API call without Content-Type: application/json".into());
            return Some(refusal(415, "Content-Type must be application/json"));
        }
        None
    }

    /// An execution as the HTTP API shows it under the current faults.
    fn execution_body(&self, mut execution: crate::amc::Execution, status: StatusCode) -> Response {
        let faults = self.state().faults.clone();
        if faults.novel_status && execution.status == Status::Running {
            execution.status = Status::Unknown;
        }
        if faults.wrapped_bodies {
            let wrapped = serde_json::json!({ "workflowExecution": execution });
            (status, Json(wrapped)).into_response()
        } else {
            (status, Json(execution)).into_response()
        }
    }
}

fn unauthorized() -> Response {
    let body = ErrorBody {
        message: Some("Unauthorized".into()),
        ..ErrorBody::default()
    };
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// What AMC answers a read or a cancel before looking at it: a refusal of
/// the account headers, else the drawn fault, if there is one.
fn screened(sim: &Simulator, headers: &HeaderMap, request: &str) -> Option<Response> {
    sim.refuse_headers(headers)
        .or_else(|| sim.draw(request).map(Fault::response))
}

/// Decodes an `application/x-www-form-urlencoded` body or query string;
/// axum's `Form` is not compiled in.
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
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
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

async fn http_token(State(sim): State<Simulator>, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_fields(&body).into_iter().collect();
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
    let (token, expires_in) = {
        let mut state = sim.state();
        let token = format!("Atza|{}", hex::encode(state.rng.random::<[u8; 24]>()));
        let now = Instant::now();
        let expiry = now.checked_add(config.token_lifetime).unwrap_or(now);
        state.tokens.insert(token.clone(), expiry);
        let told = state.faults.token_expires_in;
        (token, told.unwrap_or(config.token_lifetime.as_secs()))
    };
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
    let request = match serde_json::from_slice::<CreateExecution>(&body) {
        Ok(request) => request,
        Err(e) => return sim.refuse(400, format!("invalid request body: {e}")),
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
        (Ok(execution), None) => {
            // Only what AMC answers a create with; anything else is read as 200.
            let status = Some(sim.config().create_status)
                .filter(|s| wire::is_create_success(*s))
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::OK);
            sim.execution_body(execution, status)
        }
        (
            Err(crate::amc::ApiError::Refused {
                status: 400,
                message,
                ..
            }),
            _,
        ) => sim.refuse(400, message),
        (Err(e), _) => answer::<()>(Err(e)),
    }
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
        Ok(execution) => sim.execution_body(execution, StatusCode::OK),
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
    let cancelled =
        serde_json::from_slice::<CancelBody>(&body).is_ok_and(|b| b.status == Status::Cancelled);
    if !cancelled {
        return sim.refuse(
            400,
            format!("PUT on execution {id} without {{\"status\":\"CANCELLED\"}}: the only status that can be set is CANCELLED"),
        );
    }
    match sim.cancel(&instance, &id).await {
        Ok(()) => match sim.get(&instance, &id).await {
            Ok(execution) => sim.execution_body(execution, StatusCode::OK),
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
    answer(urls.map(|download_urls| DownloadUrls { download_urls }))
}

/// The `nextToken` of every page under `Faults::looping_next_token`.
const LOOPING_TOKEN: &str = "loop";

async fn http_list(
    State(sim): State<Simulator>,
    uri: Uri,
    Path(instance): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Some(early) = screened(&sim, &headers, &format!("GET {uri}")) {
        return early;
    }
    let fields = form_fields(raw.unwrap_or_default().as_bytes());
    let filter = match ListFilter::parse(fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(filter) => filter,
        Err(details) => return sim.refuse(400, details),
    };
    let looping = sim.state().faults.looping_next_token;
    let query = ListQuery {
        workflow_id: filter.workflow_id.unwrap_or_default(),
        min_creation_time: filter
            .min_creation_time
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
        // The looping token leads back to the first page, for ever.
        next_token: filter
            .next_token
            .filter(|t| !(looping && t == LOOPING_TOKEN)),
    };
    match sim.list(&instance, &query).await {
        Ok(mut page) if looping => {
            page.next_token = Some(LOOPING_TOKEN.into());
            answer(Ok(page))
        }
        Ok(page) => answer(Ok(page)),
        Err(crate::amc::ApiError::Refused {
            status: 400,
            message,
            ..
        }) => sim.refuse(400, message),
        Err(e) => answer::<()>(Err(e)),
    }
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
    let config = sim.config();
    let content_type = if config.gzip_results {
        "application/gzip"
    } else {
        "text/csv"
    };
    let pause = sim.state().faults.slow_download;
    let file = sim
        .succeeded_week(&id)
        .and_then(|week| results::part_file(config, &id, &week, part));
    match file {
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
