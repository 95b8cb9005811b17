//! The simulator's own tests: the lifecycle, paging, result forms, dropped
//! answers, and one test per request it refuses as AMC does (each refusal
//! also recorded as a violation).

use std::io::Read;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::results::CSV_HEADER;
use super::*;
use crate::amc::wire::DownloadUrls;

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
        self.api_as(method, path, "application/json")
    }

    fn api_as(&self, method: Method, path: &str, content_type: &str) -> reqwest::RequestBuilder {
        let url = format!("{}/amc/reporting/{INSTANCE}{path}", self.running.base_url);
        self.http
            .request(method, url)
            .bearer_auth(&self.token)
            .header("Amazon-Advertising-API-ClientId", "sim-client")
            .header("Amazon-Advertising-API-AdvertiserId", "adv1")
            .header("Amazon-Advertising-API-MarketplaceId", "mkt1")
            .header("Content-Type", content_type)
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
    let end = crate::amc::wire::parse_time(&start).expect("week") + chrono::Duration::days(7);
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
    assert!(crate::amc::adoption::answers(
        &created,
        &week_request("campaign_performance", "2025-01-06")
    ));
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

    let not_json = h
        .api_as(Method::POST, "/workflowExecutions", "text/plain")
        .body("{}");
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
            "/workflowExecutions?workflowId=wf&minCreationTime=2020-01-01T00:00:00".to_owned();
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
    let urls: DownloadUrls = serde_json::from_value(h.get(&path).await.1).unwrap();
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

/// Sends `request`, expects AMC's 400 with `{"code":"400","details":..}`,
/// and returns the details; the refusal must be recorded as a violation.
async fn refused(h: &Harness, request: reqwest::RequestBuilder) -> String {
    let before = h.running.simulator.violations().len();
    let (status, body) = h.send(request).await;
    assert_eq!((status, &body["code"]), (400, &json!("400")), "{body}");
    let details = body["details"].as_str().expect("details").to_owned();
    let violations = h.running.simulator.violations();
    assert_eq!(violations.len(), before + 1, "{violations:?}");
    assert_eq!(violations[before], details);
    details
}

#[tokio::test]
async fn a_min_creation_time_with_a_zone_suffix_is_refused() {
    let h = Harness::start(fast()).await;
    let path = "/workflowExecutions?workflowId=wf&minCreationTime=2026-11-30T10:15:00Z";
    let details = refused(&h, h.api(Method::GET, path)).await;
    assert!(
        details.contains("minCreationTime") && details.contains("suffix"),
        "{details}"
    );
    let plain = "/workflowExecutions?workflowId=wf&minCreationTime=2026-11-30T10:15:00";
    assert_eq!(h.get(plain).await.0, 200);
}

#[tokio::test]
async fn a_min_creation_time_with_a_fraction_is_refused() {
    let h = Harness::start(fast()).await;
    let path = "/workflowExecutions?minCreationTime=2026-11-30T10:15:00.000";
    let details = refused(&h, h.api(Method::GET, path)).await;
    assert!(details.contains("fraction"), "{details}");
}

#[tokio::test]
async fn a_list_with_neither_workflow_id_nor_min_creation_time_is_refused() {
    let h = Harness::start(fast()).await;
    let details = refused(&h, h.api(Method::GET, "/workflowExecutions?limit=10")).await;
    assert!(
        details.contains("either workflowId or minCreationTime"),
        "{details}"
    );
    // An empty nextToken is the first page, as some clients send it.
    let first = "/workflowExecutions?workflowId=wf&nextToken=";
    assert_eq!(h.get(first).await, (200, json!({"executions": []})));
}

#[tokio::test]
async fn a_list_limit_over_a_hundred_is_refused() {
    let h = Harness::start(fast()).await;
    let path = "/workflowExecutions?workflowId=wf&limit=500";
    let details = refused(&h, h.api(Method::GET, path)).await;
    assert!(details.contains("limit"), "{details}");
}

#[tokio::test]
async fn a_next_token_the_simulator_never_gave_is_refused() {
    let h = Harness::start(fast()).await;
    let path = "/workflowExecutions?workflowId=wf&nextToken=bogus";
    let details = refused(&h, h.api(Method::GET, path)).await;
    assert!(details.contains("nextToken"), "{details}");
}

#[tokio::test]
async fn a_window_not_in_amcs_form_is_refused() {
    let h = Harness::start(fast()).await;
    for (start, why) in [
        ("2025-01-06T00:00:00Z", "suffix"),
        ("2025-01-06T00:00:00.000", "fraction"),
        ("2025-01-06", "yyyy-MM-ddTHH:mm:ss"),
    ] {
        let mut body = week_request("wf", "2025-01-06");
        body.time_window_start = start.into();
        let request = h.api(Method::POST, "/workflowExecutions").json(&body);
        let details = refused(&h, request).await;
        assert!(
            details.contains("timeWindowStart") && details.contains(why),
            "{details}"
        );
    }
    assert!(h.running.simulator.ledger().is_empty());
}

#[tokio::test]
async fn an_unknown_time_zone_is_refused() {
    let h = Harness::start(fast()).await;
    let mut body = week_request("wf", "2025-01-06");
    body.time_window_time_zone = "Mars/Olympus".into();
    let request = h.api(Method::POST, "/workflowExecutions").json(&body);
    let details = refused(&h, request).await;
    assert!(details.contains("Mars/Olympus"), "{details}");
}

#[tokio::test]
async fn a_create_body_that_is_not_json_is_refused() {
    let h = Harness::start(fast()).await;
    let request = h
        .api(Method::POST, "/workflowExecutions")
        .body("{\"workflowId\":");
    let details = refused(&h, request).await;
    assert!(details.contains("invalid request body"), "{details}");
}

#[tokio::test]
async fn each_missing_account_header_is_refused() {
    let h = Harness::start(fast()).await;
    let url = format!(
        "{}/amc/reporting/{INSTANCE}/workflowExecutions/x",
        h.running.base_url
    );
    let all = [
        ("Amazon-Advertising-API-ClientId", "sim-client"),
        ("Amazon-Advertising-API-AdvertiserId", "adv1"),
        ("Amazon-Advertising-API-MarketplaceId", "mkt1"),
    ];
    for (missing, _) in all {
        let mut request = h
            .http
            .get(&url)
            .bearer_auth(&h.token)
            .header("Content-Type", "application/json");
        for (name, value) in all.iter().filter(|(name, _)| *name != missing) {
            request = request.header(*name, *value);
        }
        let details = refused(&h, request).await;
        assert!(details.contains(missing), "{details}");
    }
}

#[tokio::test]
async fn a_call_without_authorization_is_refused_and_recorded() {
    let h = Harness::start(fast()).await;
    let url = format!(
        "{}/amc/reporting/{INSTANCE}/workflowExecutions/x",
        h.running.base_url
    );
    assert_eq!(h.send(h.http.get(&url)).await.0, 401);
    assert_eq!(
        h.running.simulator.violations(),
        ["API call without an Authorization header"]
    );
}

#[tokio::test]
async fn a_call_without_json_content_type_is_refused() {
    let h = Harness::start(fast()).await;
    let request = h.api_as(Method::GET, "/workflowExecutions/x", "text/plain");
    assert_eq!(h.send(request).await.0, 415);
    assert_eq!(
        h.running.simulator.violations(),
        ["API call without Content-Type: application/json"]
    );
}

#[tokio::test]
async fn a_cancel_without_the_cancelled_body_is_refused() {
    let h = Harness::start(fast()).await;
    let created = h.create("wf", "2025-01-06").await;
    let path = format!("/workflowExecutions/{}", created.workflow_execution_id);
    let request = h
        .api(Method::PUT, &path)
        .json(&json!({"status": "RUNNING"}));
    let details = refused(&h, request).await;
    assert!(details.contains("CANCELLED"), "{details}");
}

#[tokio::test]
async fn parameter_values_are_echoed_unless_configured_away_and_202_can_answer_a_create() {
    let h = Harness::start(fast()).await;
    let mut body = week_request("wf", "2025-01-06");
    body.parameter_values.insert("region".into(), "eu".into());
    let request = h.api(Method::POST, "/workflowExecutions").json(&body);
    let (status, answer) = h.send(request).await;
    assert_eq!(
        (status, &answer["parameterValues"]),
        (200, &json!({"region": "eu"}))
    );

    let h = Harness::start(SimConfig {
        omit_parameter_values: true,
        create_status: 202,
        ..fast()
    })
    .await;
    let request = h.api(Method::POST, "/workflowExecutions").json(&body);
    let (status, answer) = h.send(request).await;
    assert_eq!(status, 202);
    assert!(answer.get("parameterValues").is_none(), "{answer}");
}

#[tokio::test]
async fn results_come_as_multi_member_gzip_with_quoted_breaks_and_no_final_line_break() {
    let h = Harness::start(SimConfig {
        execution_duration: Duration::ZERO,
        gzip_results: true,
        gzip_members: 3,
        result_parts: 2,
        quoted_line_breaks: true,
        trailing_newline: false,
        rows_per_result: 9..=9,
        ..fast()
    })
    .await;
    let created = h.create("wf", "2025-01-06").await;
    let id = &created.workflow_execution_id;
    let path = format!("/workflowExecutions/{id}/downloadUrls");
    let urls: DownloadUrls = serde_json::from_value(h.get(&path).await.1).unwrap();
    let mut parts = Vec::new();
    for url in &urls.download_urls {
        let gz = h.http.get(url).send().await.unwrap().bytes().await.unwrap();
        // A single-member reader stops after the first member.
        let mut first = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut first)
            .unwrap();
        let mut all = String::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_string(&mut all)
            .unwrap();
        assert!(first.len() < all.len(), "several members");
        assert!(all.starts_with(&format!("{CSV_HEADER},note\n")));
        assert!(!all.ends_with('\n'), "no final line break: {all:?}");
        parts.push(all);
    }
    let whole = String::from_utf8(h.running.simulator.result_csv(id).unwrap()).unwrap();
    assert!(whole.contains("\"first line\nsecond, \"\"quoted\"\" line\r\nthird\""));
    let header_len = CSV_HEADER.len() + ",note".len();
    assert_eq!(
        whole,
        format!("{}\n{}", parts[0], &parts[1][header_len + 1..])
    );
    assert_eq!(h.running.simulator.result_records(id), Some(9));
}

#[tokio::test]
async fn download_urls_can_come_empty_a_set_number_of_times() {
    let h = Harness::start(SimConfig {
        execution_duration: Duration::ZERO,
        faults: Faults {
            empty_download_urls: 2,
            ..Faults::default()
        },
        ..fast()
    })
    .await;
    let created = h.create("wf", "2025-01-06").await;
    let path = format!(
        "/workflowExecutions/{}/downloadUrls",
        created.workflow_execution_id
    );
    assert_eq!(h.get(&path).await, (200, json!({"downloadUrls": []})));
    assert_eq!(h.get(&path).await, (200, json!({"downloadUrls": []})));
    let (status, urls) = h.get(&path).await;
    assert_eq!(
        (status, urls["downloadUrls"].as_array().map(Vec::len)),
        (200, Some(1))
    );
}

#[tokio::test]
async fn a_looping_next_token_and_a_hostile_expires_in_are_answered_as_configured() {
    let h = Harness::start(SimConfig {
        faults: Faults {
            looping_next_token: true,
            token_expires_in: Some(18_000_000_000_000_000_000),
            ..Faults::default()
        },
        ..fast()
    })
    .await;
    let (_, token) = h.login("sim-secret").await;
    assert_eq!(token["expires_in"], json!(18_000_000_000_000_000_000u64));
    for path in [
        "/workflowExecutions?workflowId=wf",
        "/workflowExecutions?workflowId=wf&nextToken=loop",
    ] {
        let (status, page) = h.get(path).await;
        assert_eq!(
            (status, &page["nextToken"]),
            (200, &json!("loop")),
            "{path}"
        );
    }
}
