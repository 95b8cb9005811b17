//! The commands that read the journal for people and audits: `status`,
//! `weeks`, `executions`, `events` and `lineage`.
//!
//! Owns their flow and exit codes: ask the journal, print through
//! `output`. Queries are the journal's, rendering `render`'s.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

use super::context::Context;
use super::output::{emit, quiet_on_closed_pipe};
use super::render;
use crate::amc::Status;
use crate::journal::replay::Replay;
use crate::journal::{EventFilter, ExecutionFilter, Phase, StoredEvent, WeekView};
use crate::warehouse::rows::ExecutionStatus;

/// How often `events --follow` looks for new events.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

pub fn status(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    emit(json, &ctx.journal_read_only()?.status()?, render::status)?;
    Ok(ExitCode::SUCCESS)
}

pub fn weeks(ctx: &Context, schedule: &str, grid: bool, json: bool) -> anyhow::Result<ExitCode> {
    let journal = ctx.journal_read_only()?;
    let Some(weeks) = journal.weeks_of(schedule)? else {
        let known: Vec<String> = journal
            .status()?
            .collections
            .into_iter()
            .map(|c| c.name)
            .collect();
        eprintln!(
            "the journal holds no collection named `{schedule}` (it holds: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
        return Ok(ExitCode::from(1));
    };
    emit(json, &weeks, |weeks| {
        if grid {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            render::week_grid(schedule, weeks, colour)
        } else {
            render::weeks(schedule, weeks)
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn executions(ctx: &Context, filter: &ExecutionFilter, json: bool) -> anyhow::Result<ExitCode> {
    let journal = ctx.journal_read_only()?;
    let lines = journal.executions(filter)?;
    emit(json, &lines, |lines| render::executions(lines))?;
    Ok(ExitCode::SUCCESS)
}

/// Streams the event log; with `follow`, keeps printing new events until
/// `shutdown` resolves.
pub async fn events(
    ctx: &Context,
    mut filter: EventFilter,
    follow: bool,
    json: bool,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    let journal = ctx.journal_read_only()?;
    tokio::pin!(shutdown);
    loop {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let walked = journal.each_event(&filter, |event: StoredEvent| -> anyhow::Result<()> {
            let line = if json {
                format!("{}\n", serde_json::to_string(&event)?)
            } else {
                render::event_line(&event)
            };
            Ok(out.write_all(line.as_bytes())?)
        });
        let flushed = out.flush();
        match walked {
            Ok(last) => filter.after_seq = last,
            Err(e) => {
                return match e.downcast_ref::<std::io::Error>() {
                    Some(io) if io.kind() == std::io::ErrorKind::BrokenPipe => {
                        Ok(ExitCode::SUCCESS)
                    }
                    _ => Err(e),
                };
            }
        }
        quiet_on_closed_pipe(flushed)?;
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
        }
    }
}

/// `lineage`: the journal's view of the week(s), with the values of the
/// state Postgres acknowledged replayed from the events.
pub fn lineage(ctx: &Context, key: &str, json: bool) -> anyhow::Result<ExitCode> {
    let mut lineage = ctx.journal_read_only()?.lineage(key)?;
    if lineage.weeks.is_empty() {
        eprintln!(
            "nothing in the journal matches `{key}` (a week date, week id, attempt id or AMC execution id)"
        );
        return Ok(ExitCode::from(1));
    }
    for week in &mut lineage.weeks {
        fill_postgres_values(week);
    }
    emit(json, &lineage, render::lineage)?;
    Ok(ExitCode::SUCCESS)
}

/// The state of the week and its attempts after event `upto`, replayed.
fn replay_upto(week: &WeekView, upto: i64) -> Replay {
    let mut replay = Replay::default();
    for (seq, _, kind, subject, payload) in week.events.iter().filter(|e| e.0 <= upto) {
        replay.apply(*seq, kind, subject, payload);
    }
    replay
}

/// What Postgres holds of a replayed attempt, by the rule the reconciler
/// sends it with (`warehouse::rows`); `None` when it is never sent.
fn replayed_status(replay: &Replay, attempt: &str) -> Option<ExecutionStatus> {
    let row = replay
        .state
        .get(&("execution".to_owned(), attempt.to_owned()))?;
    let phase = Phase::parse(row.get("state")?.as_str()?)?;
    let amc = row
        .get("amc_status")
        .and_then(Value::as_str)
        .map(Status::parse);
    crate::journal::execution_status(phase, amc)
}

/// Postgres's tracking values as the reconciler sends them (the rules of
/// `warehouse::rows`, applied to the replayed state), replayed up to the last change
/// Postgres acknowledged. A row whose first change still waits, or an
/// attempt AMC never held, is not in Postgres: `postgres` becomes `None`.
fn fill_postgres_values(week: &mut WeekView) {
    let field = |replay: &Replay, entity: &str, id: &str, name: &str| {
        replay
            .state
            .get(&(entity.to_owned(), id.to_owned()))
            .and_then(|row| row.get(name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let upto = |synced: &Option<crate::journal::SyncedValues>| {
        synced
            .as_ref()
            .map(|s| s.waiting_since_seq.map_or(i64::MAX, |p| p - 1))
    };
    let week_id = week.id.to_string();
    if let Some(upto) = upto(&week.postgres) {
        let replay = replay_upto(week, upto);
        let seq = field(&replay, "week", &week_id, "journal_seq");
        if seq.is_null() {
            week.postgres = None;
        } else {
            let attempt = field(&replay, "week", &week_id, "attempt_id");
            let attempt = attempt.as_str().unwrap_or_default();
            let sent = replayed_status(&replay, attempt).is_some();
            let values = json!({
                "status": field(&replay, "week", &week_id, "status"),
                "execution_id": if sent { json!(attempt) } else { Value::Null },
                "amc_execution_id": field(&replay, "execution", attempt, "amc_execution_id"),
                "record_count": field(&replay, "week", &week_id, "record_count"),
                "data_checksum": field(&replay, "week", &week_id, "data_checksum"),
                "error_message": field(&replay, "week", &week_id, "error_message"),
                "journal_seq": seq,
            });
            if let Some(synced) = &mut week.postgres {
                synced.journal_seq = seq.as_i64();
                synced.values = Some(values);
            }
        }
    }
    let replays: Vec<Option<Replay>> = week
        .attempts
        .iter()
        .map(|a| upto(&a.postgres).map(|upto| replay_upto(week, upto)))
        .collect();
    for (attempt, replay) in week.attempts.iter_mut().zip(replays) {
        let Some(replay) = replay else {
            continue;
        };
        let id = attempt.id.to_string();
        // Intents and abandoned attempts are never sent.
        let Some(status) = replayed_status(&replay, &id) else {
            attempt.postgres = None;
            continue;
        };
        let seq = field(&replay, "execution", &id, "journal_seq");
        if let Some(synced) = &mut attempt.postgres {
            synced.journal_seq = seq.as_i64();
            synced.values = Some(json!({
                "status": status.as_str(),
                "amc_execution_id": field(&replay, "execution", &id, "amc_execution_id"),
                "row_count": field(&replay, "execution", &id, "row_count"),
                "error_message": field(&replay, "execution", &id, "error_message"),
                "journal_seq": seq,
            }));
        }
    }
}
