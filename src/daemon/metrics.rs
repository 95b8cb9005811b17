//! Prometheus text for /metrics: tracking state read from the journal, and
//! the process's own counters (`telemetry::counters`).
//!
//! Owns the text format. It reads the journal through
//! `Journal::metrics_snapshot` and never writes anything.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::journal::MetricsSnapshot;
use crate::telemetry::counters::{
    AMC_LATENCY, BUCKETS, HistogramSnapshot, POSTGRES_LATENCY, amc_errors,
};

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
    family(
        "chronicle_quarantined_rows",
        "gauge",
        "Rows Postgres refused, waiting in the journal's quarantine.",
        vec![(String::new(), snapshot.quarantined as f64)],
    );
    family(
        "chronicle_unresolved_attempts",
        "gauge",
        "Open attempts a run had to leave (latest event attempt.unresolved).",
        vec![(String::new(), snapshot.unresolved_attempts as f64)],
    );
    family(
        "chronicle_alerts_undelivered",
        "gauge",
        "Alerts some configured receiver has not acknowledged yet.",
        vec![(String::new(), snapshot.undelivered_alerts as f64)],
    );
    family(
        "chronicle_skipped_firings_total",
        "counter",
        "Firings skipped (overlap, pause) per schedule.",
        snapshot
            .schedules
            .iter()
            .map(|(name, s)| (label_set("schedule", name), s.skipped_firings as f64))
            .collect(),
    );
    family(
        "chronicle_last_success_timestamp_seconds",
        "gauge",
        "When a run of the schedule last completed (Unix time).",
        snapshot
            .schedules
            .iter()
            .filter_map(|(name, s)| Some((label_set("schedule", name), s.last_success?)))
            .collect(),
    );
    family(
        "chronicle_schedule_weeks",
        "gauge",
        "Weeks of each schedule's collection by status.",
        snapshot
            .weeks_by_schedule
            .iter()
            .flat_map(|(name, statuses)| {
                statuses.iter().map(move |(status, weeks)| {
                    (
                        labels(&[("schedule", name), ("status", status)]),
                        *weeks as f64,
                    )
                })
            })
            .collect(),
    );
    histogram(
        &mut out,
        "chronicle_amc_request_duration_seconds",
        "AMC API calls (one HTTP request each) since the process started.",
        &AMC_LATENCY.snapshot(),
    );
    histogram(
        &mut out,
        "chronicle_postgres_request_duration_seconds",
        "Postgres batches landed by the reconciler (one round trip each) since the process started.",
        &POSTGRES_LATENCY.snapshot(),
    );
    out
}

/// A Prometheus histogram: cumulative buckets, `+Inf`, sum and count.
fn histogram(out: &mut String, name: &str, help: &str, seen: &HistogramSnapshot) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (bound, count) in BUCKETS.iter().zip(&seen.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {}",
        seen.cumulative.last().copied().unwrap_or(0)
    );
    let _ = writeln!(out, "{name}_sum {}", seen.sum_seconds);
    let _ = writeln!(out, "{name}_count {}", seen.count);
}

/// `{a="x",b="y"}`, each value escaped.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(label, value)| {
            let set = label_set(label, value);
            set[1..set.len() - 1].to_owned()
        })
        .collect();
    format!("{{{}}}", inner.join(","))
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
    fn per_schedule_figures_and_latency_histograms_are_rendered() {
        let mut snapshot = MetricsSnapshot::default();
        snapshot.schedules.insert(
            "weekly".into(),
            crate::journal::ScheduleFigures {
                skipped_firings: 3,
                last_success: Some(1_700_000_000.5),
            },
        );
        snapshot
            .weeks_by_schedule
            .entry("weekly".into())
            .or_default()
            .insert("failed".into(), 2);
        snapshot.unresolved_attempts = 1;
        let text = render(&snapshot);
        for line in [
            "chronicle_skipped_firings_total{schedule=\"weekly\"} 3\n",
            "chronicle_last_success_timestamp_seconds{schedule=\"weekly\"} 1700000000.5\n",
            "chronicle_schedule_weeks{schedule=\"weekly\",status=\"failed\"} 2\n",
            "chronicle_unresolved_attempts 1\n",
            "# TYPE chronicle_amc_request_duration_seconds histogram\n",
            "chronicle_postgres_request_duration_seconds_bucket{le=\"+Inf\"} ",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn label_values_are_escaped_as_the_text_format_requires() {
        assert_eq!(label_set("state", "a\\b\"c\nd"), r#"{state="a\\b\"c\nd"}"#);
        assert_eq!(label_set("status", "completed"), r#"{status="completed"}"#);
    }
}
