//! Process-wide counters that the code paths bump through cheap global
//! hooks and /metrics reads (`daemon::metrics`): AMC request errors by
//! class, and the latency of AMC and Postgres requests as histograms with
//! fixed buckets.
//!
//! Owns the counts only; their text format is the daemon's.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// AMC request errors by class since the process started. A Mutex over a
/// handful of keys: errors are rare, so contention is not a concern.
static AMC_ERRORS: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

/// Counts one failed AMC request. `class` is `ApiError::class()`:
/// `throttled`, `unauthorized`, `server`, `client`, `no_answer`,
/// `unreachable`, `malformed` or `auth`.
pub fn amc_request_error(class: &'static str) {
    let mut errors = AMC_ERRORS.lock().unwrap_or_else(|p| p.into_inner());
    *errors.entry(class).or_default() += 1;
}

pub fn amc_errors() -> BTreeMap<&'static str, u64> {
    AMC_ERRORS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Upper bounds (seconds) of the latency buckets: from a local call to a
/// result download of minutes.
pub const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A latency histogram: atomics only, so recording never waits.
pub struct Histogram {
    /// Observations at or below each bound (not cumulative; rendering
    /// sums them), and past the last one.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// What a histogram holds at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative count per bound of `BUCKETS`, then `+Inf`.
    pub cumulative: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
        }
    }

    /// Times what happens until the returned guard is dropped.
    pub fn time(&'static self) -> Timed {
        Timed {
            histogram: self,
            started: Instant::now(),
        }
    }
}

/// Every AMC API call (one HTTP request, token refresh included).
pub static AMC_LATENCY: Histogram = Histogram::new();

/// Every Postgres batch the reconciler lands (one round trip).
pub static POSTGRES_LATENCY: Histogram = Histogram::new();

/// Records the time since it was made when dropped, however the timed
/// code ended (an error, a `?`, a cancelled future).
pub struct Timed {
    histogram: &'static Histogram,
    started: Instant,
}

impl Drop for Timed {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        static LATENCY: Histogram = Histogram::new();
        LATENCY.observe(Duration::from_millis(3));
        LATENCY.observe(Duration::from_millis(70));
        LATENCY.observe(Duration::from_secs(900));
        let seen = LATENCY.snapshot();
        assert_eq!(seen.count, 3);
        assert_eq!(seen.cumulative[0], 1, "5 ms bucket");
        assert_eq!(seen.cumulative[4], 2, "100 ms bucket");
        assert_eq!(seen.cumulative[BUCKETS.len() - 1], 2);
        assert_eq!(seen.cumulative[BUCKETS.len()], 3, "+Inf");
        assert!((seen.sum_seconds - 900.073).abs() < 1e-6);
    }
}
