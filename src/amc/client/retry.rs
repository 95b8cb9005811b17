//! How one API call is repeated after a transient failure: exponential
//! backoff with full jitter, bounded by attempts and by total time, and a
//! client-wide pause when AMC says `Retry-After`.
//!
//! Owns the timing only; which failures are worth repeating is the caller's.

use std::sync::Mutex;
use std::time::Duration;

use rand::RngExt;
use tokio::time::Instant;

use crate::amc::ApiError;

/// Bounds on repeating one call, from the `[amc]` retry keys.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries per call, the first included; 1 means never repeat.
    pub attempts: u32,
    /// No repeat starts later than this after the first try.
    pub max_elapsed: Duration,
    /// Ceiling of the first wait; doubled at each repeat.
    pub min_delay: Duration,
    /// Cap of the doubling.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Full jitter: a uniformly random wait up to the exponential ceiling, so
    /// many callers throttled together do not come back together.
    fn backoff(&self, repeat: u32) -> Duration {
        let ceiling = self
            .min_delay
            .saturating_mul(2u32.saturating_pow(repeat.min(20)))
            .min(self.max_delay);
        ceiling.mul_f64(rand::rng().random_range(0.0..=1.0))
    }
}

/// Throttling is per account: after a 429 with `Retry-After`, no call of
/// this client is sent before that moment.
#[derive(Debug, Default)]
pub struct Gate {
    /// The earliest moment the next call may go out.
    not_before: Mutex<Option<Instant>>,
}

impl Gate {
    pub async fn wait(&self) {
        let until = *self.not_before.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    fn hold_until(&self, until: Instant) {
        let mut guard = self.not_before.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none_or(|current| current < until) {
            *guard = Some(until);
        }
    }
}

/// The `Retry-After` of an answer, in seconds, the only form AMC and Login
/// with Amazon send.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Runs `call` until it succeeds, fails in a way `worth_repeating` rejects,
/// or the policy's bounds are spent; returns the last error then.
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    gate: &Gate,
    what: &str,
    worth_repeating: impl Fn(&ApiError) -> bool,
    mut call: F,
) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let started = Instant::now();
    let mut repeat = 0;
    loop {
        gate.wait().await;
        let error = match call().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        // What the server asked for, uncapped, decides whether a repeat fits
        // in the call's time; the wait itself never exceeds that time.
        let asked = match &error {
            ApiError::Refused {
                retry_after: Some(after),
                ..
            } => {
                // The value is AMC's: `Retry-After: 18446744073709551615`
                // must not overflow the clock. No pause is longer than a
                // whole call may take; such a call ends throttled at once.
                let pause = (*after).min(policy.max_elapsed);
                if let Some(until) = Instant::now().checked_add(pause) {
                    gate.hold_until(until);
                }
                *after
            }
            _ => policy.backoff(repeat),
        };
        let wait = asked.min(policy.max_elapsed);
        repeat += 1;
        let spent = started.elapsed().saturating_add(asked) > policy.max_elapsed;
        if !worth_repeating(&error) || repeat >= policy.attempts || spent {
            return Err(error);
        }
        tracing::warn!(call = what, class = error.class(), error = %error, retry_in = ?wait, "AMC call failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_under_the_capped_exponential_ceiling() {
        let policy = RetryPolicy {
            attempts: 10,
            max_elapsed: Duration::from_secs(60),
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for repeat in 0..12 {
            let ceiling = (Duration::from_millis(100) * 2u32.pow(repeat)).min(policy.max_delay);
            for _ in 0..50 {
                assert!(policy.backoff(repeat) <= ceiling);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hostile_retry_after_ends_the_call_instead_of_overflowing_the_clock() {
        let policy = RetryPolicy {
            attempts: 5,
            max_elapsed: Duration::from_secs(60),
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        };
        let gate = Gate::default();
        let mut tries = 0;
        let result: Result<(), _> = retry(
            &policy,
            &gate,
            "test",
            |_| true,
            || {
                tries += 1;
                async {
                    Err(ApiError::Refused {
                        status: 429,
                        message: "slow down".into(),
                        retry_after: Some(Duration::from_secs(u64::MAX)),
                    })
                }
            },
        )
        .await;
        assert_eq!(result.unwrap_err().class(), "throttled");
        assert_eq!(tries, 1);
        // The pause it left behind is the call's bound, not forever.
        let started = Instant::now();
        gate.wait().await;
        assert_eq!(started.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_is_tried_at_most_the_configured_times_and_stops_at_the_time_bound() {
        let policy = RetryPolicy {
            attempts: 4,
            max_elapsed: Duration::from_secs(3600),
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        };
        let gate = Gate::default();
        let mut tries = 0;
        let result: Result<(), _> = retry(
            &policy,
            &gate,
            "test",
            |_| true,
            || {
                tries += 1;
                async { Err(ApiError::Unreachable("down".into())) }
            },
        )
        .await;
        assert!(result.is_err());
        assert_eq!(tries, 4);

        // Plenty of attempts, little time: the time bound ends it, and every
        // repeat waited the Retry-After it was told. Paused time makes the
        // count exact: tries at 0, 30, 60 and 90 ms; a fourth wait would end
        // past the 100 ms bound.
        let short = RetryPolicy {
            max_elapsed: Duration::from_millis(100),
            attempts: 1000,
            ..policy
        };
        let (started, mut tries) = (Instant::now(), 0);
        let _: Result<(), _> = retry(
            &short,
            &gate,
            "test",
            |_| true,
            || {
                tries += 1;
                async {
                    Err(ApiError::Refused {
                        status: 429,
                        message: "slow down".into(),
                        retry_after: Some(Duration::from_millis(30)),
                    })
                }
            },
        )
        .await;
        assert_eq!(tries, 4);
        assert_eq!(started.elapsed(), Duration::from_millis(90));
    }
}
