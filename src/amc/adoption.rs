//! Recognising the execution AMC created for one of chronicle's own create
//! requests whose answer was lost (DESIGN I2, I2b): which listed executions
//! could be it, and when there is exactly one.
//!
//! Owns the matching rule and the time bounds; the listing itself is
//! `listing`'s, and who already owns an execution the journal's (the runner
//! asks it through the `owned` callback).

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::wire::{self, CreateExecution, Execution};

/// Host and AMC clocks disagree a little; NTP keeps them within seconds, so
/// this is generous without reaching back to another attempt's minutes.
pub(crate) const CLOCK_SKEW: Duration = Duration::from_secs(120);

/// When AMC can have received an attempt's POST: not before its intent was
/// committed (I1) and not after the create call's deadline (the runner cuts
/// the call at `create_span`), each widened by [`CLOCK_SKEW`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SentWindow {
    pub earliest: DateTime<Utc>,
    pub latest: DateTime<Utc>,
}

impl SentWindow {
    pub(crate) fn after_intent(intent_at: DateTime<Utc>, create_span: Duration) -> SentWindow {
        let skew = chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default();
        let span = chrono::Duration::from_std(create_span).unwrap_or(chrono::Duration::days(1));
        SentWindow {
            earliest: intent_at - skew,
            latest: intent_at + span + skew,
        }
    }

    /// An execution with no readable `createTime` cannot be placed, so it is
    /// not excluded here; the one-candidate rule still guards it.
    fn holds(&self, execution: &Execution) -> bool {
        execution
            .created_at()
            .is_none_or(|at| self.earliest <= at && at <= self.latest)
    }
}

/// What a listing says about one lost create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Exactly one execution is this request's: adopt it.
    Adopt(Box<Execution>),
    /// None is: AMC never created it, and a new attempt pays nothing twice.
    NoneCreated,
    /// Several could be: taking one could take another's; nothing is
    /// adopted and the attempt stays open for a person or a later run.
    Ambiguous(Vec<String>),
}

/// Whether `execution` was created from `request`: the workflow, and every
/// field AMC echoes of the window, zone and parameters, equal to what was
/// sent. A field AMC leaves out cannot contradict; the window must be there
/// in one of its two forms.
pub(crate) fn answers(execution: &Execution, request: &CreateExecution) -> bool {
    if execution.workflow_id != request.workflow_id {
        return false;
    }
    let agrees = |echoed: &Option<String>, sent: &str| echoed.as_deref().is_none_or(|e| e == sent);
    let originals = agrees(
        &execution.time_window_start_original,
        &request.time_window_start,
    ) && agrees(
        &execution.time_window_end_original,
        &request.time_window_end,
    ) && agrees(
        &execution.time_window_time_zone_original,
        &request.time_window_time_zone,
    );
    let utc = utc_window(request);
    let utc_agrees = |echoed: &Option<String>, sent: Option<DateTime<Utc>>| {
        echoed.as_deref().is_none_or(|e| {
            wire::parse_answer_time(e).is_some() && wire::parse_answer_time(e) == sent
        })
    };
    let converted = utc_agrees(&execution.time_window_start, utc.map(|w| w.0))
        && utc_agrees(&execution.time_window_end, utc.map(|w| w.1));
    let window_shown = (execution.time_window_start_original.is_some()
        && execution.time_window_end_original.is_some())
        || (execution.time_window_start.is_some() && execution.time_window_end.is_some());
    let parameters = execution.parameter_values.as_ref().is_none_or(|echoed| {
        echoed.len() == request.parameter_values.len()
            && request
                .parameter_values
                .iter()
                .all(|(key, sent)| echoed.get(key).and_then(|v| v.as_str()) == Some(sent.as_str()))
    });
    originals && converted && window_shown && parameters
}

/// The request's window in UTC, as AMC reports `timeWindowStart`/`End`.
fn utc_window(request: &CreateExecution) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let zone: chrono_tz::Tz = request.time_window_time_zone.parse().ok()?;
    let (start, end) = request.check().ok()?;
    let utc = |local| {
        zone.from_local_datetime(&local)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    };
    Some((utc(start)?, utc(end)?))
}

/// Decides a listing: the executions that answer `request`, were created
/// while its POST can have arrived, and that `owned` says no attempt holds.
pub(crate) fn decide<E>(
    listed: Vec<Execution>,
    request: &CreateExecution,
    sent: SentWindow,
    mut owned: impl FnMut(&str) -> Result<bool, E>,
) -> Result<Verdict, E> {
    let mut candidates = Vec::new();
    for execution in listed {
        if answers(&execution, request)
            && sent.holds(&execution)
            && !owned(&execution.workflow_execution_id)?
        {
            candidates.push(execution);
        }
    }
    Ok(match candidates.len() {
        0 => Verdict::NoneCreated,
        1 => Verdict::Adopt(Box::new(candidates.remove(0))),
        _ => Verdict::Ambiguous(
            candidates
                .into_iter()
                .map(|e| e.workflow_execution_id)
                .collect(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amc::Status;

    fn request(zone: &str, region: &str) -> CreateExecution {
        CreateExecution {
            workflow_id: "wf".into(),
            time_window_type: "EXPLICIT".into(),
            time_window_start: "2025-01-06T00:00:00".into(),
            time_window_end: "2025-01-13T00:00:00".into(),
            time_window_time_zone: zone.into(),
            parameter_values: [("region".to_owned(), region.to_owned())].into(),
        }
    }

    fn created(id: &str, from: &CreateExecution, at: &str) -> Execution {
        let (start, end) = utc_window(from).unwrap();
        Execution {
            workflow_execution_id: id.into(),
            workflow_id: from.workflow_id.clone(),
            status: Status::Pending,
            create_time: Some(at.into()),
            last_updated_time: None,
            time_window_start: Some(start.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            time_window_end: Some(end.format("%Y-%m-%dT%H:%M:%S").to_string()),
            time_window_start_original: Some(from.time_window_start.clone()),
            time_window_end_original: Some(from.time_window_end.clone()),
            time_window_time_zone_original: Some(from.time_window_time_zone.clone()),
            parameter_values: Some(
                from.parameter_values
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                    .collect(),
            ),
            status_reason: None,
            failure_reason: None,
            details: None,
            message: None,
        }
    }

    fn sent() -> SentWindow {
        let intent = wire::parse_answer_time("2026-11-30T10:15:00Z").unwrap();
        SentWindow::after_intent(intent, Duration::from_secs(300))
    }

    fn nobody(_: &str) -> Result<bool, ()> {
        Ok(false)
    }

    #[test]
    fn only_the_execution_of_the_same_zone_and_parameters_answers() {
        let ours = request("UTC", "eu");
        let other_zone = request("America/New_York", "eu");
        let other_parameters = request("UTC", "us");
        let at = "2026-11-30T10:15:02.120Z";
        let listed = vec![
            created("zone", &other_zone, at),
            created("params", &other_parameters, at),
            created("ours", &ours, at),
        ];
        let verdict = decide(listed, &ours, sent(), nobody).unwrap();
        assert!(matches!(verdict, Verdict::Adopt(e) if e.workflow_execution_id == "ours"));
    }

    #[test]
    fn a_field_amc_leaves_out_cannot_contradict_but_the_window_must_show() {
        let ours = request("UTC", "eu");
        let mut bare = created("bare", &ours, "2026-11-30T10:15:02");
        bare.parameter_values = None;
        bare.time_window_time_zone_original = None;
        assert!(answers(&bare, &ours));
        // The UTC window still tells zones apart when the originals are absent.
        let mut utc_only = created("utc", &request("America/New_York", "eu"), "x");
        utc_only.time_window_start_original = None;
        utc_only.time_window_end_original = None;
        utc_only.time_window_time_zone_original = None;
        utc_only.parameter_values = None;
        assert!(!answers(&utc_only, &ours));
        let mut no_window = bare.clone();
        no_window.time_window_start_original = None;
        no_window.time_window_start = None;
        assert!(!answers(&no_window, &ours));
    }

    #[test]
    fn executions_created_outside_the_posts_window_or_owned_are_not_taken() {
        let ours = request("UTC", "eu");
        let listed = vec![
            created("before", &ours, "2026-11-30T10:10:00Z"),
            created("after", &ours, "2026-11-30T10:40:00Z"),
            created("owned", &ours, "2026-11-30T10:15:01Z"),
        ];
        let verdict = decide(listed, &ours, sent(), |id| Ok::<_, ()>(id == "owned")).unwrap();
        assert_eq!(verdict, Verdict::NoneCreated);
    }

    #[test]
    fn two_equal_candidates_are_ambiguous_and_none_is_taken() {
        let ours = request("UTC", "eu");
        let listed = vec![
            created("a", &ours, "2026-11-30T10:15:01Z"),
            created("b", &ours, "2026-11-30T10:15:03Z"),
        ];
        let verdict = decide(listed, &ours, sent(), nobody).unwrap();
        assert_eq!(verdict, Verdict::Ambiguous(vec!["a".into(), "b".into()]));
    }
}
