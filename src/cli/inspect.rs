//! The audit-facing commands behind `cli`: `weeks`, `executions`, `events`,
//! `lineage`, `export` and `audit`. Each opens what it needs, asks the journal (and
//! Postgres for `audit`), and prints a table or JSON.
//!
//! Owns the commands' flow and output streams only: queries are the
//! journal's, findings `audit`'s, files `evidence`'s and `export`'s,
//! rendering `report`'s.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::audit::evidence;
use crate::audit::export::{self, Format, What};
use crate::audit::{self, Finding};
use crate::cli::render;
use crate::journal::replay::Replay;
use crate::journal::{ChainHead, EventFilter, ExecutionFilter, Journal, StoredEvent, WeekView};
use crate::settings::{ConfigError, Settings};
use crate::sync::drift;
use crate::warehouse::Warehouse;

/// How often `events --follow` looks for new events.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

/// Parses `--since`: a date (`2025-03-03`, midnight UTC) or an RFC 3339
/// instant, into the journal's stored text form so it compares as text.
pub fn parse_since(text: &str) -> Result<String, String> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let at = date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc();
        return Ok(at.to_rfc3339_opts(SecondsFormat::Millis, true));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| {
            t.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Millis, true)
        })
        .map_err(|_| format!("`{text}` is neither a date (YYYY-MM-DD) nor an RFC 3339 time"))
}

/// A bar over events on stderr. Drawn only on a terminal: indicatif hides
/// a bar whose target is not one, so pipes and logs never see it.
fn progress_bar(label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} events ({elapsed})")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly.
fn emit(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    out.write_all(text.as_bytes())
}

fn finish(result: std::io::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

pub fn weeks(
    settings: &Settings,
    schedule: &str,
    grid: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let journal = Journal::open(&settings.journal.path)?;
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
    let text = if json {
        format!("{}\n", serde_json::to_string_pretty(&weeks)?)
    } else if grid {
        let stdout = std::io::stdout();
        let colour = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
        render::week_grid(schedule, &weeks, colour)
    } else {
        render::weeks(schedule, &weeks)
    };
    finish(emit(&mut std::io::stdout().lock(), &text))?;
    Ok(ExitCode::SUCCESS)
}

pub fn executions(
    settings: &Settings,
    filter: &ExecutionFilter,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let journal = Journal::open(&settings.journal.path)?;
    let lines = journal.executions(filter)?;
    let text = if json {
        format!("{}\n", serde_json::to_string_pretty(&lines)?)
    } else {
        render::executions(&lines)
    };
    finish(emit(&mut std::io::stdout().lock(), &text))?;
    Ok(ExitCode::SUCCESS)
}

/// Streams the event log; with `follow`, keeps printing new events until
/// `shutdown` resolves.
pub async fn events(
    settings: &Settings,
    mut filter: EventFilter,
    follow: bool,
    json: bool,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    let journal = Journal::open(&settings.journal.path)?;
    tokio::pin!(shutdown);
    loop {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let walked = journal.each_event(&filter, |event: StoredEvent| -> anyhow::Result<()> {
            let line = if json {
                format!("{}\n", serde_json::to_string(&event)?)
            } else {
                render::event_line(&event)
            };
            Ok(emit(&mut out, &line)?)
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
        finish(flushed)?;
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
        }
    }
}

pub fn export(
    settings: &Settings,
    what: What,
    format: Format,
    schedule: Option<&str>,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    if what == What::Events && schedule.is_some() {
        return Err(ConfigError::Invalid(
            "`--schedule` narrows weeks and executions; events are exported whole (use `--evidence FILE --schedule S` for a schedule's evidence)".into(),
        )
        .into());
    }
    let journal = Journal::open(&settings.journal.path)?;
    match out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
            let rows = export::export(
                &journal,
                what,
                format,
                schedule,
                std::io::BufWriter::new(file),
            )?;
            eprintln!("wrote {rows} rows to {}", path.display());
        }
        None => match export::export(&journal, what, format, schedule, std::io::stdout().lock()) {
            Err(export::ExportError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => {
                other?;
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export_evidence(
    settings: &Settings,
    out: &Path,
    schedule: Option<&str>,
    since: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let journal = Journal::open(&settings.journal.path)?;
    let bar = progress_bar("evidence");
    let header = match evidence::export(&journal, out, schedule, since, &bar) {
        Ok(header) => header,
        Err(evidence::EvidenceError::Nothing(why)) => {
            bar.finish_and_clear();
            eprintln!("nothing to export: {why}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    bar.finish_and_clear();
    println!(
        "wrote {} events ({}..{}) to {}; chain head {}\nverify anywhere with: chronicle audit --evidence {}",
        header.events,
        header.first_seq,
        header.head.seq,
        out.display(),
        header.head.hash,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `lineage`: the journal's view of the week(s), with the values of the
/// state Postgres acknowledged replayed from the events.
pub fn lineage(settings: &Settings, key: &str, json: bool) -> anyhow::Result<ExitCode> {
    let mut lineage = Journal::open(&settings.journal.path)?.lineage(key)?;
    if lineage.weeks.is_empty() {
        eprintln!(
            "nothing in the journal matches `{key}` (a week date, week id, attempt id or AMC execution id)"
        );
        return Ok(ExitCode::from(1));
    }
    for week in &mut lineage.weeks {
        fill_postgres_values(week);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&lineage)?);
    } else {
        print!("{}", render::lineage(&lineage));
    }
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

/// Postgres's tracking values as the reconciler sends them (`journal::read`
/// builds the same shapes from the tables), replayed up to the last change
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
            let sent = !matches!(
                field(&replay, "execution", attempt, "state").as_str(),
                None | Some("intent" | "abandoned")
            );
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
        let state = field(&replay, "execution", &id, "state");
        // Intents and abandoned attempts are never sent (`journal::read`).
        if matches!(state.as_str(), None | Some("intent" | "abandoned")) {
            attempt.postgres = None;
            continue;
        }
        let seq = field(&replay, "execution", &id, "journal_seq");
        let status = if state == "succeeded" {
            json!("SUCCEEDED")
        } else {
            match field(&replay, "execution", &id, "amc_status") {
                Value::Null => json!("PENDING"),
                status => status,
            }
        };
        if let Some(synced) = &mut attempt.postgres {
            synced.journal_seq = seq.as_i64();
            synced.values = Some(json!({
                "status": status,
                "amc_execution_id": field(&replay, "execution", &id, "amc_execution_id"),
                "row_count": field(&replay, "execution", &id, "row_count"),
                "error_message": field(&replay, "execution", &id, "error_message"),
                "journal_seq": seq,
            }));
        }
    }
}

/// `audit --evidence FILE`: needs no config, journal or database.
pub fn audit_evidence(
    file: &Path,
    expected_head: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let verdict = evidence::verify(file, expected_head)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print!("{}", render::evidence(&verdict));
    }
    Ok(ExitCode::from(if verdict.ok() { 0 } else { 1 }))
}

/// `audit`: the chain, the state tables against the log, and Postgres when
/// `postgres.url` is set.
pub async fn audit(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let journal = Journal::open(&settings.journal.path)?;
    let bar = progress_bar("audit");
    let report = audit::journal(&journal, &bar);
    bar.finish_and_clear();
    let mut report = report?;
    match settings.postgres_url() {
        None => report
            .notes
            .push("postgres.url is empty: Postgres was not compared".into()),
        Some(url) => match Warehouse::connect(url, &settings.postgres_tls()).await {
            Err(e) => report.push(Finding {
                check: "postgres",
                subject: "connection".into(),
                detail: format!("cannot compare with Postgres: {e}"),
            }),
            Ok(warehouse) => {
                let found = drift::check(&journal, &warehouse).await?;
                for f in found.findings {
                    report.push(Finding {
                        check: "postgres",
                        subject: format!("{} {}", f.entity, f.id),
                        detail: format!("{}: {}", f.problem.as_str(), f.detail),
                    });
                }
                let (heads, others) = warehouse.chain_heads(&report.journal_id).await?;
                let heads: Vec<ChainHead> = heads
                    .into_iter()
                    .map(|(seq, hash)| ChainHead { seq, hash })
                    .collect();
                audit::chain_heads(&journal, &heads, others, &mut report)?;
            }
        },
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render::audit(&report));
    }
    Ok(ExitCode::from(if report.clean() { 0 } else { 1 }))
}

/// Bad `--what`/`--evidence` combinations are bad input (exit 2).
pub fn bad_export_arguments() -> ConfigError {
    ConfigError::Invalid(
        "`chronicle export` needs either `--what weeks|executions|events` or `--evidence FILE`"
            .into(),
    )
}
