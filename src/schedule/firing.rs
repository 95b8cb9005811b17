//! The scheduler's decisions, apart from any I/O: when a schedule fires next
//! in its timezone (across DST changes), which firings a stopped daemon
//! missed and how they coalesce, and whether a firing runs or is skipped
//! (overlap, pause). Time comes from a `Clock`, so all of it runs under
//! paused tokio time in tests.
//!
//! Owns no journal, no runner, no signals: the daemon asks, journals the
//! answer and acts on it.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// Why the scheduler did what it did: the `reason` of every
/// `schedule.firing` event, so "why didn't it run?" has a journaled answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The cron came due while the daemon ran.
    Fired,
    /// Firings missed while the daemon was down, run once at start.
    Catchup,
    /// An earlier process left attempts open: resumed at start.
    Resume,
    /// A person asked for it (`chronicle backfill`).
    Manual,
    /// The collection was still being worked on: nothing started.
    SkippedOverlap,
    /// `chronicle pause` holds the schedule: nothing started.
    SkippedPaused,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Fired => "fired",
            Reason::Catchup => "catchup",
            Reason::Resume => "resume",
            Reason::Manual => "manual",
            Reason::SkippedOverlap => "skipped-overlap",
            Reason::SkippedPaused => "skipped-paused",
        }
    }

    /// True when the decision starts a collection run.
    pub fn runs(self) -> bool {
        !matches!(self, Reason::SkippedOverlap | Reason::SkippedPaused)
    }

    /// What the runner records as the attempts' `triggered_by`.
    pub fn triggered_by(self) -> &'static str {
        match self {
            Reason::Fired => "schedule",
            other => other.as_str(),
        }
    }
}

/// Parses a six-field cron with seconds, as schedule files hold it.
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expression)
        .map_err(|e| {
            format!("`{expression}` is not a six-field cron expression with seconds ({e})")
        })
}

/// The first firing strictly after `after`, computed on the wall clock of
/// `tz`. A local time that does not exist (spring forward) fires at the
/// first instant after the gap; one that happens twice (fall back) fires
/// once, at its first occurrence.
pub fn next_after(cron: &Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // croner keeps the start's fraction of a second; firings are on whole
    // seconds, and journaled as such.
    let after = after.with_nanosecond(0).unwrap_or(after);
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The next `n` firings after `after`.
pub fn upcoming(cron: &Cron, tz: Tz, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let mut times = Vec::with_capacity(n);
    let mut cursor = after;
    while times.len() < n {
        match next_after(cron, tz, cursor) {
            Some(next) => {
                times.push(next);
                cursor = next;
            }
            None => break,
        }
    }
    times
}

/// Firings missed while no daemon ran, coalesced into one catch-up run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    /// How many firings the one catch-up run stands for.
    pub count: usize,
    pub first: DateTime<Utc>,
    /// The firing the catch-up run is journaled for.
    pub last: DateTime<Utc>,
}

/// Firings in `(since, now]` that are also within `window` of `now`.
/// `since` is the schedule's last journaled decision: nothing before it was
/// missed. A schedule that never fired has nothing to catch up.
pub fn missed(
    cron: &Cron,
    tz: Tz,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    window: Duration,
) -> Option<Missed> {
    let since = since?;
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let from = now
        .checked_sub_signed(window)
        .map_or(since, |w| w.max(since));
    let mut found: Option<Missed> = None;
    let mut cursor = from;
    // Bounded: an every-second cron down for a week is 604,800 firings;
    // counting them all would delay the start for nothing.
    const COUNT_LIMIT: usize = 100_000;
    while let Some(at) = next_after(cron, tz, cursor).filter(|at| *at <= now) {
        let entry = found.get_or_insert(Missed {
            count: 0,
            first: at,
            last: at,
        });
        entry.count += 1;
        entry.last = at;
        cursor = at;
        if entry.count >= COUNT_LIMIT {
            entry.last = cron
                .find_previous_occurrence(&now.with_timezone(&tz), true)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(at);
            break;
        }
    }
    found
}

/// Which collections are being worked on: the overlap rule.
#[derive(Debug, Default)]
pub struct Decider {
    /// Names of schedules whose collection run has not finished.
    busy: HashSet<String>,
}

impl Decider {
    /// Decides one firing: pause wins, then overlap; a run that starts
    /// marks the collection busy until `finished`.
    pub fn decide(&mut self, schedule: &str, wanted: Reason, paused: bool) -> Reason {
        if paused && wanted != Reason::Manual {
            return Reason::SkippedPaused;
        }
        if self.busy.contains(schedule) {
            return Reason::SkippedOverlap;
        }
        self.busy.insert(schedule.to_owned());
        wanted
    }

    pub fn finished(&mut self, schedule: &str) {
        self.busy.remove(schedule);
    }

    pub fn is_busy(&self, schedule: &str) -> bool {
        self.busy.contains(schedule)
    }
}

/// Where "now" comes from: the wall clock in production, tokio's (pausable)
/// clock in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock, read afresh each time so an NTP step is seen.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A fixed instant advanced by tokio's clock: with `start_paused`, hours of
/// schedule pass in no real time. For the tests.
#[cfg(test)]
pub struct TokioClock {
    /// The wall-clock instant `started` stands for.
    base: DateTime<Utc>,
    /// When the clock was made, on tokio's clock.
    started: tokio::time::Instant,
}

#[cfg(test)]
impl TokioClock {
    pub fn starting_at(base: DateTime<Utc>) -> TokioClock {
        TokioClock {
            base,
            started: tokio::time::Instant::now(),
        }
    }
}

#[cfg(test)]
impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default();
        self.base + elapsed
    }
}

/// Longest single sleep: the wall clock is read again at least this often,
/// so a clock step (NTP, suspend) delays a firing by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// One schedule's cron as the timer drives it.
pub struct Timer {
    pub cron: Cron,
    pub tz: Tz,
    /// The firing being waited for.
    next: Option<DateTime<Utc>>,
}

impl Timer {
    pub fn new(cron: Cron, tz: Tz, now: DateTime<Utc>) -> Timer {
        let next = next_after(&cron, tz, now);
        Timer { cron, tz, next }
    }
}

/// Sleeps until the earliest timer is due and returns the indexes of the
/// timers due with their scheduled instant; each one then waits for its
/// following firing. Never returns when no timer has a next firing.
pub async fn next_due(timers: &mut [Timer], clock: &dyn Clock) -> Vec<(usize, DateTime<Utc>)> {
    loop {
        let now = clock.now();
        let due: Vec<(usize, DateTime<Utc>)> = timers
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.next.filter(|at| *at <= now).map(|at| (i, at)))
            .collect();
        if !due.is_empty() {
            for (i, at) in &due {
                let timer = &mut timers[*i];
                // From the later of the firing and now: a firing late by
                // more than a period is not followed by a burst.
                timer.next = next_after(&timer.cron, timer.tz, (*at).max(now));
            }
            return due;
        }
        let Some(earliest) = timers.iter().filter_map(|t| t.next).min() else {
            return std::future::pending().await;
        };
        let wait = (earliest - now).to_std().unwrap_or_default().min(MAX_SLEEP);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::{America::New_York, Europe::Berlin};

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Every firing of `cron` in `tz` in the 48 hours from `start`, driven
    /// by the real timer under paused tokio time.
    async fn firings_over_two_days(cron: &str, tz: Tz, start: &str) -> Vec<DateTime<Utc>> {
        let clock = TokioClock::starting_at(utc(start));
        let end = clock.now() + chrono::Duration::hours(48);
        let mut timers = vec![Timer::new(parse_cron(cron).unwrap(), tz, clock.now())];
        let mut fired = Vec::new();
        loop {
            let due = next_due(&mut timers, &clock).await;
            if due[0].1 > end {
                return fired;
            }
            fired.extend(due.into_iter().map(|(_, at)| at));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_0230_job_fires_once_at_0300_when_new_york_springs_forward() {
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
        let fired = firings_over_two_days("0 30 2 * * *", New_York, "2026-03-07T12:00:00Z").await;
        assert_eq!(
            fired,
            vec![utc("2026-03-08T07:00:00Z"), utc("2026-03-09T06:30:00Z")],
            "03:00 EDT on the day of the gap, 02:30 EDT the day after"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_0230_job_fires_once_when_new_york_falls_back() {
        // 2026-11-01: 02:00 EDT becomes 01:00 EST; 02:30 happens once (EST).
        let fired = firings_over_two_days("0 30 2 * * *", New_York, "2026-10-31T12:00:00Z").await;
        assert_eq!(
            fired,
            vec![utc("2026-11-01T07:30:00Z"), utc("2026-11-02T07:30:00Z")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_0230_job_fires_once_at_0300_when_berlin_springs_forward() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST.
        let fired = firings_over_two_days("0 30 2 * * *", Berlin, "2026-03-28T12:00:00Z").await;
        assert_eq!(
            fired,
            vec![utc("2026-03-29T01:00:00Z"), utc("2026-03-30T00:30:00Z")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_0230_job_fires_once_at_the_first_0230_when_berlin_falls_back() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        let fired = firings_over_two_days("0 30 2 * * *", Berlin, "2026-10-24T12:00:00Z").await;
        assert_eq!(
            fired,
            vec![utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")],
            "02:30 CEST (the first), not also 02:30 CET"
        );
    }

    #[test]
    fn a_daemon_started_in_the_repeated_hour_does_not_fire_the_02_30_again() {
        let cron = parse_cron("0 30 2 * * *").unwrap();
        // 02:45 CET, the second pass, after the 02:30 CEST firing.
        let next = next_after(&cron, Berlin, utc("2026-10-25T01:45:00Z")).unwrap();
        assert_eq!(next, utc("2026-10-26T01:30:00Z"));
    }

    #[test]
    fn firings_fall_on_whole_seconds_whatever_the_instant_searched_from() {
        let cron = parse_cron("* * * * * *").unwrap();
        let next = next_after(&cron, Berlin, utc("2026-01-01T00:00:00.75Z")).unwrap();
        assert_eq!(next, utc("2026-01-01T00:00:01Z"));
    }

    #[test]
    fn upcoming_lists_the_next_firings_in_order() {
        let cron = parse_cron("0 0 6 * * Mon").unwrap();
        let times = upcoming(&cron, Berlin, utc("2026-01-01T00:00:00Z"), 3);
        let local: Vec<String> = times
            .iter()
            .map(|t| t.with_timezone(&Berlin).format("%F %R").to_string())
            .collect();
        assert_eq!(
            local,
            ["2026-01-05 06:00", "2026-01-12 06:00", "2026-01-19 06:00"]
        );
    }

    #[test]
    fn missed_firings_within_the_window_coalesce_into_one() {
        let cron = parse_cron("0 0 6 * * *").unwrap();
        let since = Utc.with_ymd_and_hms(2026, 1, 1, 6, 0, 0).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap();
        let missed = missed(
            &cron,
            Tz::UTC,
            Some(since),
            now,
            Duration::from_secs(7 * 86400),
        );
        assert_eq!(
            missed,
            Some(Missed {
                count: 4,
                first: Utc.with_ymd_and_hms(2026, 1, 2, 6, 0, 0).unwrap(),
                last: Utc.with_ymd_and_hms(2026, 1, 5, 6, 0, 0).unwrap(),
            })
        );
    }

    #[test]
    fn firings_older_than_the_catchup_window_are_not_caught_up() {
        let cron = parse_cron("0 0 6 * * *").unwrap();
        let since = Utc.with_ymd_and_hms(2026, 1, 1, 6, 0, 0).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 20, 12, 0, 0).unwrap();
        let two_days = Duration::from_secs(2 * 86400);
        let found = missed(&cron, Tz::UTC, Some(since), now, two_days).unwrap();
        assert_eq!(found.count, 2, "only the 19th and the 20th");
        assert_eq!(
            found.first,
            Utc.with_ymd_and_hms(2026, 1, 19, 6, 0, 0).unwrap()
        );
        let short = Duration::from_secs(3600);
        assert_eq!(missed(&cron, Tz::UTC, Some(since), now, short), None);
    }

    #[test]
    fn nothing_is_missed_without_a_previous_firing_or_when_none_came_due() {
        let cron = parse_cron("0 0 6 * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap();
        let week = Duration::from_secs(7 * 86400);
        assert_eq!(missed(&cron, Tz::UTC, None, now, week), None);
        let this_morning = Utc.with_ymd_and_hms(2026, 1, 5, 6, 0, 0).unwrap();
        assert_eq!(missed(&cron, Tz::UTC, Some(this_morning), now, week), None);
    }

    #[test]
    fn a_firing_while_the_collection_is_busy_is_skipped_until_it_finishes() {
        let mut decider = Decider::default();
        assert_eq!(
            decider.decide("weekly", Reason::Fired, false),
            Reason::Fired
        );
        assert_eq!(
            decider.decide("weekly", Reason::Fired, false),
            Reason::SkippedOverlap
        );
        assert_eq!(decider.decide("other", Reason::Fired, false), Reason::Fired);
        decider.finished("weekly");
        assert_eq!(
            decider.decide("weekly", Reason::Catchup, false),
            Reason::Catchup
        );
    }

    #[test]
    fn a_paused_schedule_is_skipped_and_does_not_become_busy() {
        let mut decider = Decider::default();
        assert_eq!(
            decider.decide("weekly", Reason::Fired, true),
            Reason::SkippedPaused
        );
        assert!(!decider.is_busy("weekly"));
        assert_eq!(
            decider.decide("weekly", Reason::Fired, false),
            Reason::Fired
        );
    }

    #[tokio::test(start_paused = true)]
    async fn two_schedules_due_together_fire_in_one_wakeup_and_never_burst_after_a_stall() {
        let clock = TokioClock::starting_at(utc("2026-01-01T00:00:00Z"));
        let every_minute = || parse_cron("0 * * * * *").unwrap();
        let mut timers = vec![
            Timer::new(every_minute(), Tz::UTC, clock.now()),
            Timer::new(every_minute(), Berlin, clock.now()),
        ];
        let due = next_due(&mut timers, &clock).await;
        assert_eq!(
            due,
            vec![
                (0, utc("2026-01-01T00:01:00Z")),
                (1, utc("2026-01-01T00:01:00Z"))
            ]
        );
        // The process stalls for ten minutes (a long journal write, a
        // suspended VM): one firing each, then back on the minute.
        tokio::time::sleep(Duration::from_secs(600)).await;
        let due = next_due(&mut timers, &clock).await;
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].1, utc("2026-01-01T00:02:00Z"));
        let due = next_due(&mut timers, &clock).await;
        assert_eq!(due[0].1, utc("2026-01-01T00:12:00Z"));
    }
}
