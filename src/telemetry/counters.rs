//! Process-wide counters that the code paths bump through cheap global
//! hooks and /metrics reads (`daemon::metrics`): AMC request errors by
//! class.
//!
//! Owns the counts only; their text format is the daemon's.

use std::collections::BTreeMap;
use std::sync::Mutex;

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
