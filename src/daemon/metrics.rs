//! Prometheus text for /metrics: tracking state read from the journal, and
//! the process's own counters (`telemetry::counters`).
//!
//! Owns the text format. It reads the journal through
//! `Journal::metrics_snapshot` and never writes anything.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::journal::MetricsSnapshot;
use crate::telemetry::counters::amc_errors;

/// The whole /metrics page.
pub fn render(snapshot: &MetricsSnapshot) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let labelled = |label: &str, map: &BTreeMap<String, i64>| {
        map.iter()
            .map(|(key, count)| (label_set(label, key), *count as f64))
            .collect::<Vec<_>>()
    };
    family(
        "chronicle_executions",
        "gauge",
        "Execution attempts in the journal by state.",
        labelled("state", &snapshot.executions_by_state),
    );
    family(
        "chronicle_weeks",
        "gauge",
        "Weeks in the journal by status.",
        labelled("status", &snapshot.weeks_by_status),
    );
    family(
        "chronicle_outbox_pending",
        "gauge",
        "Journal changes waiting to be synced to Postgres.",
        vec![(String::new(), snapshot.outbox_pending as f64)],
    );
    family(
        "chronicle_outbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest change waiting for Postgres (0 when none waits).",
        vec![(
            String::new(),
            snapshot.outbox_oldest_age_seconds.unwrap_or(0.0),
        )],
    );
    if let Some(lag) = snapshot.sync_lag_seconds {
        family(
            "chronicle_sync_lag_seconds",
            "gauge",
            "Time since the last successful sync to Postgres.",
            vec![(String::new(), lag)],
        );
    }
    family(
        "chronicle_amc_request_errors_total",
        "counter",
        "Failed AMC API requests by error class since the process started.",
        amc_errors()
            .into_iter()
            .map(|(class, count)| (label_set("class", class), count as f64))
            .collect(),
    );
    let rate = if snapshot.completed_weeks == 0 {
        1.0
    } else {
        snapshot.completed_with_execution_id as f64 / snapshot.completed_weeks as f64
    };
    family(
        "chronicle_execution_id_population_ratio",
        "gauge",
        "Share of completed weeks whose execution (AMC id) is recorded.",
        vec![(String::new(), rate)],
    );
    out
}

/// `{label="value"}` with the value escaped as the text format requires
/// (backslash, double quote, newline): the values come from the journal,
/// and one odd value must not make Prometheus reject the whole page.
fn label_set(label: &str, value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{{{label}=\"{escaped}\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::counters::amc_request_error;

    #[test]
    fn amc_errors_are_counted_by_class_and_rendered() {
        amc_request_error("test_throttled");
        amc_request_error("test_throttled");
        amc_request_error("test_server");
        let mut snapshot = MetricsSnapshot {
            completed_weeks: 4,
            completed_with_execution_id: 3,
            ..MetricsSnapshot::default()
        };
        snapshot.weeks_by_status.insert("completed".into(), 4);
        let text = render(&snapshot);
        assert!(
            text.contains("chronicle_amc_request_errors_total{class=\"test_throttled\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("chronicle_amc_request_errors_total{class=\"test_server\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("chronicle_weeks{status=\"completed\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("chronicle_execution_id_population_ratio 0.75"),
            "{text}"
        );
        assert!(
            !text.contains("chronicle_sync_lag_seconds"),
            "no sync yet: {text}"
        );
    }

    #[test]
    fn label_values_are_escaped_as_the_text_format_requires() {
        assert_eq!(label_set("state", "a\\b\"c\nd"), r#"{state="a\\b\"c\nd"}"#);
        assert_eq!(label_set("status", "completed"), r#"{status="completed"}"#);
    }
}
