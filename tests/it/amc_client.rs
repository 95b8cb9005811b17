//! The AMC client against the simulator over real HTTP, call by call:
//! retries and their bounds, Retry-After, client errors, token refresh and
//! sharing, malformed answers, cancel.

use chronicle::throwaway::ConfigFile;
use std::time::Duration;

use chronicle::amc::client::{Client, http_client};
use chronicle::amc::simulator::{self, Faults, RunningSimulator, SimConfig, Simulator};
use chronicle::amc::{Api, ApiError, CreateExecution, Status};
use chronicle::settings::Settings;

const INSTANCE: &str = "amctest01";

struct Harness {
    /// Holds the config file alive.
    _dir: tempfile::TempDir,
    sim: RunningSimulator,
    client: Client,
}

/// A simulator and a client configured for it; `amc_extra` adds `[amc]` keys.
async fn harness(config: SimConfig, amc_extra: &str) -> Harness {
    let sim = simulator::spawn(Simulator::new(config)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The credentials chronicle is given, not the ones the simulator
    // accepts: a test may make them differ.
    let path = ConfigFile {
        client_secret: "sim-secret".into(),
        refresh_token: "sim-refresh".into(),
        ..ConfigFile::for_simulator(&sim)
    }
    .amc("retry_min_delay = \"5ms\"\nretry_max_delay = \"20ms\"")
    .amc(amc_extra)
    .write(dir.path())
    .unwrap();
    let settings = Settings::load(&path, true).unwrap();
    let client = Client::new(&settings.amc, http_client());
    Harness {
        _dir: dir,
        sim,
        client,
    }
}

fn week(start: &str, end: &str) -> CreateExecution {
    CreateExecution {
        workflow_id: "campaign_performance".into(),
        time_window_type: "EXPLICIT".into(),
        time_window_start: format!("{start}T00:00:00"),
        time_window_end: format!("{end}T00:00:00"),
        time_window_time_zone: "UTC".into(),
        parameter_values: Default::default(),
    }
}

fn slow() -> SimConfig {
    SimConfig {
        execution_duration: Duration::from_secs(600),
        seed: 5,
        ..SimConfig::default()
    }
}

/// Requests to `path` (method and status), in order.
fn calls_to(h: &Harness, path_end: &str) -> Vec<(String, u16)> {
    h.sim
        .simulator
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with(path_end))
        .map(|r| (r.method, r.status))
        .collect()
}

#[tokio::test]
async fn throttled_calls_wait_out_retry_after_then_succeed() {
    let h = harness(slow(), "").await;
    let created = h
        .client
        .create(INSTANCE, &week("2025-01-06", "2025-01-13"))
        .await
        .unwrap();
    h.sim.simulator.set_faults(Faults {
        throttle_rate: 0.4,
        retry_after_secs: 1,
        ..Faults::default()
    });
    for _ in 0..6 {
        let got = h
            .client
            .get(INSTANCE, &created.workflow_execution_id)
            .await
            .unwrap();
        assert_eq!(got.workflow_execution_id, created.workflow_execution_id);
    }
    let statuses: Vec<u16> = calls_to(&h, &created.workflow_execution_id)
        .into_iter()
        .map(|(_, status)| status)
        .collect();
    assert!(statuses.contains(&429), "no throttling drawn: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 6);
    assert_eq!(h.sim.simulator.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn server_errors_are_retried_only_as_often_as_configured() {
    let h = harness(slow(), "retry_attempts = 3").await;
    let created = h
        .client
        .create(INSTANCE, &week("2025-01-06", "2025-01-13"))
        .await
        .unwrap();
    h.sim.simulator.set_faults(Faults {
        server_error_rate: 1.0,
        ..Faults::default()
    });
    let id = &created.workflow_execution_id;
    let error = h.client.get(INSTANCE, id).await.unwrap_err();
    assert_eq!(error.class(), "server", "{error}");
    let statuses: Vec<u16> = calls_to(&h, id).into_iter().map(|(_, s)| s).collect();
    assert_eq!(statuses.len(), 3, "{statuses:?}");
    assert!(statuses.iter().all(|s| [500, 502, 503, 504].contains(s)));

    h.sim.simulator.set_faults(Faults::default());
    assert_eq!(
        h.client.get(INSTANCE, id).await.unwrap().status,
        Status::Pending
    );
}

#[tokio::test]
async fn a_create_is_sent_again_only_when_it_provably_did_not_reach_amc() {
    let h = harness(slow(), "retry_attempts = 3").await;
    let creates = |h: &Harness| calls_to(h, "/workflowExecutions").len();

    // A 429 means AMC did not take the request: asking again is safe.
    h.sim.simulator.set_faults(Faults {
        throttle_rate: 1.0,
        retry_after_secs: 0,
        ..Faults::default()
    });
    let error = h
        .client
        .create(INSTANCE, &week("2025-01-06", "2025-01-13"))
        .await
        .unwrap_err();
    assert_eq!(error.class(), "throttled", "{error}");
    assert_eq!(
        creates(&h),
        3,
        "a throttled create is tried every time allowed"
    );
    assert!(h.sim.simulator.ledger().is_empty());

    // A 5xx may come after AMC created the execution (the simulator does
    // exactly that): sent once, left for the runner to settle by listing.
    h.sim.simulator.set_faults(Faults {
        server_error_rate: 1.0,
        ..Faults::default()
    });
    let error = h
        .client
        .create(INSTANCE, &week("2025-01-13", "2025-01-20"))
        .await
        .unwrap_err();
    assert_eq!(error.class(), "server", "{error}");
    assert_eq!(creates(&h), 4, "a create that may exist is not repeated");
    assert_eq!(h.sim.simulator.ledger().len(), 1);
}

#[tokio::test]
async fn client_errors_are_not_retried_and_carry_amcs_own_message() {
    let h = harness(slow(), "").await;
    let error = h
        .client
        .get(INSTANCE, "no-such-execution")
        .await
        .unwrap_err();
    match &error {
        ApiError::Refused {
            status: 404,
            message,
            ..
        } => assert!(message.contains("no-such-execution not found"), "{message}"),
        other => panic!("expected a 404, got {other:?}"),
    }
    assert_eq!(error.class(), "client");
    assert_eq!(calls_to(&h, "no-such-execution"), [("GET".to_owned(), 404)]);

    let bad = CreateExecution {
        time_window_time_zone: "Mars/Olympus".into(),
        ..week("2025-01-06", "2025-01-13")
    };
    let error = h.client.create(INSTANCE, &bad).await.unwrap_err();
    assert!(error.to_string().contains("Mars/Olympus"), "{error}");
    let creates = calls_to(&h, "/workflowExecutions");
    assert_eq!(
        creates,
        [("POST".to_owned(), 400)],
        "refused once, not retried"
    );
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_and_the_call_repeated() {
    let h = harness(slow(), "").await;
    let created = h
        .client
        .create(INSTANCE, &week("2025-01-06", "2025-01-13"))
        .await
        .unwrap();
    h.sim.simulator.revoke_tokens();
    h.client
        .get(INSTANCE, &created.workflow_execution_id)
        .await
        .unwrap();
    let statuses: Vec<(String, String, u16)> = h
        .sim
        .simulator
        .requests()
        .into_iter()
        .map(|r| {
            (
                r.method,
                r.path.rsplit('/').next().unwrap().to_owned(),
                r.status,
            )
        })
        .collect();
    let id = created.workflow_execution_id.as_str();
    let expected: Vec<(String, String, u16)> = [
        ("POST", "token", 200),
        ("POST", "workflowExecutions", 200),
        ("GET", id, 401),
        ("POST", "token", 200),
        ("GET", id, 200),
    ]
    .into_iter()
    .map(|(m, p, s)| (m.to_owned(), p.to_owned(), s))
    .collect();
    assert_eq!(statuses, expected);
}

#[tokio::test]
async fn concurrent_calls_share_one_token_refresh() {
    let h = harness(slow(), "").await;
    let created = h
        .client
        .create(INSTANCE, &week("2025-01-06", "2025-01-13"))
        .await
        .unwrap();
    h.sim.simulator.revoke_tokens();
    let id = created.workflow_execution_id.clone();
    let calls = (0..16).map(|_| {
        let client = h.client.clone();
        let id = id.clone();
        tokio::spawn(async move { client.get(INSTANCE, &id).await })
    });
    for call in futures_util::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
    let tokens = calls_to(&h, "/auth/o2/token");
    // The first login, then one refresh for all sixteen, whichever of them
    // met the 401 first.
    assert_eq!(tokens.len(), 2, "{tokens:?}");
}

#[tokio::test]
async fn a_refused_refresh_token_is_an_auth_error_asked_once() {
    let h = harness(
        SimConfig {
            client_secret: "the-real-secret".into(),
            ..slow()
        },
        "",
    )
    .await;
    for _ in 0..5 {
        let error = h
            .client
            .create(INSTANCE, &week("2025-01-06", "2025-01-13"))
            .await
            .unwrap_err();
        assert_eq!(error.class(), "auth", "{error}");
        assert!(error.to_string().contains("invalid_grant"), "{error}");
    }
    assert_eq!(calls_to(&h, "/auth/o2/token").len(), 1, "no retry storm");
    assert!(calls_to(&h, "/workflowExecutions").is_empty());
}

#[tokio::test]
async fn malformed_answers_are_errors_that_name_what_was_wrong() {
    let h = harness(slow(), "retry_attempts = 1").await;
    let created = h
        .client
        .create(INSTANCE, &week("2025-01-06", "2025-01-13"))
        .await
        .unwrap();
    h.sim.simulator.set_faults(Faults {
        malformed_rate: 1.0,
        ..Faults::default()
    });
    let mut messages = Vec::new();
    for _ in 0..16 {
        let error = h
            .client
            .get(INSTANCE, &created.workflow_execution_id)
            .await
            .unwrap_err();
        assert_eq!(error.class(), "malformed", "{error}");
        messages.push(error.to_string());
    }
    let said = |needle: &str| messages.iter().any(|m| m.contains(needle));
    assert!(
        said("<!DOCTYPE html>"),
        "a gateway page is quoted: {messages:?}"
    );
    assert!(said("missing field `workflowExecutionId`"), "{messages:?}");
    assert!(said("invalid type"), "{messages:?}");
    assert!(said("Internal hiccup"), "{messages:?}");

    let list = chronicle::amc::ListQuery {
        workflow_id: "campaign_performance".into(),
        min_creation_time: chrono::Utc::now() - chrono::Duration::hours(1),
        next_token: None,
    };
    let error = h.client.list(INSTANCE, &list).await.unwrap_err();
    assert!(error.to_string().contains("execution list"), "{error}");
}

#[tokio::test]
async fn flat_and_wrapped_execution_bodies_read_the_same() {
    let h = harness(slow(), "").await;
    let created = h
        .client
        .create(INSTANCE, &week("2025-01-06", "2025-01-13"))
        .await
        .unwrap();
    let flat = h
        .client
        .get(INSTANCE, &created.workflow_execution_id)
        .await
        .unwrap();
    h.sim.simulator.set_faults(Faults {
        wrapped_bodies: true,
        ..Faults::default()
    });
    let wrapped = h
        .client
        .get(INSTANCE, &created.workflow_execution_id)
        .await
        .unwrap();
    assert_eq!(flat, wrapped);
    let requests = h.sim.simulator.requests();
    assert!(requests.iter().all(|r| r.status == 200), "{requests:?}");
}

#[tokio::test]
async fn cancel_puts_cancelled_and_a_finished_execution_cannot_be_cancelled() {
    let h = harness(slow(), "").await;
    let created = h
        .client
        .create(INSTANCE, &week("2025-01-06", "2025-01-13"))
        .await
        .unwrap();
    let id = &created.workflow_execution_id;
    h.client.cancel(INSTANCE, id).await.unwrap();
    assert_eq!(
        h.client.get(INSTANCE, id).await.unwrap().status,
        Status::Cancelled
    );
    let put = h
        .sim
        .simulator
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .expect("a PUT");
    assert_eq!(put.body.as_deref(), Some(r#"{"status":"CANCELLED"}"#));

    let again = h.client.cancel(INSTANCE, id).await.unwrap_err();
    assert!(again.to_string().contains("cannot be cancelled"), "{again}");
    assert_eq!(h.sim.simulator.violations().len(), 1);
}

#[tokio::test]
async fn a_call_that_times_out_is_retried_then_reported_as_no_answer() {
    let h = harness(slow(), "request_timeout = \"100ms\"\nretry_attempts = 3").await;
    let created = h
        .client
        .create(INSTANCE, &week("2025-01-06", "2025-01-13"))
        .await
        .unwrap();
    h.sim.simulator.set_faults(Faults {
        latency: Duration::from_secs(2),
        ..Faults::default()
    });
    let id = &created.workflow_execution_id;
    let error = h.client.get(INSTANCE, id).await.unwrap_err();
    assert_eq!(error.class(), "no_answer", "{error}");
    let tries = h
        .sim
        .simulator
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(id.as_str()))
        .count();
    assert_eq!(
        tries, 3,
        "each of the three tries reached AMC and timed out"
    );

    h.sim.simulator.set_faults(Faults::default());
    assert_eq!(
        h.client.get(INSTANCE, id).await.unwrap().status,
        Status::Pending
    );
}

#[tokio::test]
async fn a_token_is_refreshed_before_it_expires_so_amc_never_refuses_it() {
    let h = harness(
        SimConfig {
            token_lifetime: Duration::from_secs(2),
            ..slow()
        },
        "",
    )
    .await;
    let created = h
        .client
        .create(INSTANCE, &week("2025-01-06", "2025-01-13"))
        .await
        .unwrap();
    // Past the refresh point (half of a short lifetime), before the expiry.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    h.client
        .get(INSTANCE, &created.workflow_execution_id)
        .await
        .unwrap();
    assert_eq!(calls_to(&h, "/auth/o2/token").len(), 2);
    let requests = h.sim.simulator.requests();
    assert!(requests.iter().all(|r| r.status == 200), "{requests:?}");
}

#[tokio::test]
async fn chronicles_real_requests_pass_the_strict_simulator_call_by_call() {
    let h = harness(
        SimConfig {
            execution_duration: Duration::from_millis(50),
            list_page_size: 1,
            create_status: 202,
            ..slow()
        },
        "",
    )
    .await;
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    let first = h
        .client
        .create(INSTANCE, &week("2025-01-06", "2025-01-13"))
        .await
        .expect("a 202 answer is a created execution");
    let mut second_week = week("2025-01-13", "2025-01-20");
    second_week.time_window_time_zone = "Europe/Berlin".into();
    second_week
        .parameter_values
        .insert("region".into(), "eu".into());
    let second = h.client.create(INSTANCE, &second_week).await.unwrap();
    let got = h
        .client
        .get(INSTANCE, &second.workflow_execution_id)
        .await
        .unwrap();
    assert_eq!(
        got.time_window_time_zone_original.as_deref(),
        Some("Europe/Berlin")
    );
    for workflow in ["campaign_performance", ""] {
        let query = chronicle::amc::ListQuery {
            workflow_id: workflow.into(),
            min_creation_time: since,
            next_token: None,
        };
        let page = h.client.list(INSTANCE, &query).await.unwrap();
        assert_eq!(page.executions.len(), 1, "one a page");
        let next = chronicle::amc::ListQuery {
            next_token: page.next_token,
            ..query
        };
        let page = h.client.list(INSTANCE, &next).await.unwrap();
        assert_eq!(
            page.executions[0].workflow_execution_id,
            first.workflow_execution_id
        );
    }
    h.client
        .cancel(INSTANCE, &second.workflow_execution_id)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let done = loop {
        let now = h
            .client
            .get(INSTANCE, &first.workflow_execution_id)
            .await
            .unwrap();
        if now.status == Status::Succeeded {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {:?}",
            now.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let urls = h
        .client
        .download_urls(INSTANCE, &done.workflow_execution_id)
        .await
        .unwrap();
    assert_eq!(urls.len(), 1);
    assert_eq!(h.sim.simulator.violations(), Vec::<String>::new());
    let requests = h.sim.simulator.requests();
    assert!(
        requests.iter().all(|r| [200, 202].contains(&r.status)),
        "{requests:?}"
    );
    let lists: Vec<&str> = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/workflowExecutions"))
        .map(|r| r.query.as_str())
        .collect();
    assert_eq!(lists.len(), 4);
    assert!(
        lists
            .iter()
            .all(|q| q.contains("minCreationTime=") && !q.contains("Z&")),
        "{lists:?}"
    );
}

#[tokio::test]
async fn an_instance_id_cannot_climb_into_another_instance() {
    let h = harness(slow(), "").await;
    let climbing = "amcinj01/../amcother";
    let created = h
        .client
        .create(climbing, &week("2025-01-06", "2025-01-13"))
        .await
        .unwrap();
    let ledger = h.sim.simulator.ledger();
    assert_eq!(ledger[0].instance_id, climbing, "one path segment, as sent");
    assert_eq!(h.sim.simulator.live_executions("amcother"), 0);
    let elsewhere = h
        .client
        .get("amcother", &created.workflow_execution_id)
        .await;
    assert!(matches!(
        elsewhere,
        Err(ApiError::Refused { status: 404, .. })
    ));
    let dot = h
        .client
        .get("..", &created.workflow_execution_id)
        .await
        .unwrap_err();
    assert_eq!(dot.class(), "client", "{dot}");
}
