//! Week rules of DESIGN.md: calendar-aligned weeks, when a week is due, where
//! a collection starts, and the explicit time window sent to AMC.
//!
//! Pure date arithmetic: no journal, no clock of its own (callers pass
//! `today`), no I/O.

use chrono::{Datelike, Days, NaiveDate, Weekday};

use crate::schedule::{Backfill, Schedule};

/// The latest week start on or before `date` for weeks starting on `start`.
pub fn align(date: NaiveDate, start: Weekday) -> NaiveDate {
    let back = (7 + date.weekday().num_days_from_monday() - start.num_days_from_monday()) % 7;
    date - Days::new(back.into())
}

/// The most recent week that is due on `today`: it ended (start + 7 days) at
/// least `data_lag_days` ago.
pub fn latest_due(today: NaiveDate, start: Weekday, data_lag_days: u32) -> NaiveDate {
    let newest_allowed_start = today - Days::new(7 + u64::from(data_lag_days));
    align(newest_allowed_start, start)
}

/// Where the collection starts per the schedule alone, before the journal's
/// recorded start is taken into account.
pub fn configured_start(schedule: &Schedule, today: NaiveDate) -> NaiveDate {
    let latest = latest_due(today, schedule.week_start, schedule.data_lag_days);
    match schedule.backfill {
        Backfill::Weeks(n) => latest - Days::new(7 * u64::from(n.saturating_sub(1))),
        Backfill::From(date) => {
            let aligned = align(date, schedule.week_start);
            if aligned == date {
                date
            } else {
                aligned + Days::new(7)
            }
        }
    }
}

/// Week starts from `start` through the latest due week, oldest first.
pub fn due_weeks(start: NaiveDate, latest: NaiveDate) -> Vec<NaiveDate> {
    let mut weeks = Vec::new();
    let mut week = start;
    while week <= latest {
        weeks.push(week);
        week = week + Days::new(7);
    }
    weeks
}

/// `[start, start + 7 days)` as AMC's explicit window strings.
pub fn time_window(start: NaiveDate) -> (String, String) {
    let end = start + Days::new(7);
    // AMC's one request form for times (`amc::wire::TIME_FORMAT`).
    let fmt = |d: NaiveDate| crate::amc::wire::format_time(d.and_time(chrono::NaiveTime::MIN));
    (fmt(start), fmt(end))
}

/// Inclusive end, as the application this replaces stored `week_end_date`.
pub fn inclusive_end(start: NaiveDate) -> NaiveDate {
    start + Days::new(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn weeks_align_to_monday_or_sunday() {
        // 2025-01-08 is a Wednesday.
        assert_eq!(align(d(2025, 1, 8), Weekday::Mon), d(2025, 1, 6));
        assert_eq!(align(d(2025, 1, 8), Weekday::Sun), d(2025, 1, 5));
        assert_eq!(align(d(2025, 1, 6), Weekday::Mon), d(2025, 1, 6));
    }

    #[test]
    fn a_week_is_due_once_it_ended_data_lag_days_ago() {
        // Week of Mon 2025-01-06 ends 2025-01-13; with 14 days of lag it is
        // due on 2025-01-27 and not a day earlier.
        assert_eq!(latest_due(d(2025, 1, 27), Weekday::Mon, 14), d(2025, 1, 6));
        assert_eq!(
            latest_due(d(2025, 1, 26), Weekday::Mon, 14),
            d(2024, 12, 30)
        );
        assert_eq!(latest_due(d(2025, 1, 13), Weekday::Mon, 0), d(2025, 1, 6));
    }

    #[test]
    fn due_weeks_run_from_start_to_latest_inclusive() {
        let weeks = due_weeks(d(2024, 12, 16), d(2025, 1, 6));
        assert_eq!(
            weeks,
            vec![
                d(2024, 12, 16),
                d(2024, 12, 23),
                d(2024, 12, 30),
                d(2025, 1, 6)
            ]
        );
        assert!(due_weeks(d(2025, 1, 13), d(2025, 1, 6)).is_empty());
    }

    #[test]
    fn the_window_is_seven_calendar_days_and_the_stored_end_is_inclusive() {
        assert_eq!(
            time_window(d(2025, 1, 6)),
            (
                "2025-01-06T00:00:00".to_owned(),
                "2025-01-13T00:00:00".to_owned()
            )
        );
        assert_eq!(inclusive_end(d(2025, 1, 6)), d(2025, 1, 12));
    }
}
