//! The operator's small commands: `alerts` (what was raised and where it
//! was delivered), `backup` (a consistent copy of the live journal), and
//! the ecosystem's conventions, `completions <shell>` and `man`.
//!
//! Owns their wiring; the journal reads and copies, clap_complete and
//! clap_mangen write the scripts and the page from the command line's
//! definition, so they never drift from it.

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

use super::args::Cli;
use super::context::Context;
use super::output::{emit, print};
use super::render;

pub fn alerts(ctx: &Context, limit: usize, json: bool) -> anyhow::Result<ExitCode> {
    let settings = ctx.settings()?;
    let receivers: Vec<&str> = settings
        .alerts
        .receivers()
        .iter()
        .map(|(r, _)| r.as_str())
        .collect();
    let alerts = ctx.journal_read_only()?.alerts(limit)?;
    emit(json, &alerts, |alerts| render::alerts(alerts, &receivers))?;
    Ok(ExitCode::SUCCESS)
}

/// Reads the journal read-only: a daemon may go on writing meanwhile.
pub fn backup(ctx: &Context, file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let report = ctx.journal_read_only()?.backup_to(file)?;
    emit(json, &report, |r| {
        format!(
            "backup of the journal written to {} ({} bytes, up to event {} {}); check it with `chronicle --config <a config naming it> audit`\n",
            r.file.display(),
            r.bytes,
            r.head_seq.map_or("-".into(), |s| s.to_string()),
            r.head_hash.as_deref().unwrap_or("-")
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "chronicle", &mut script);
    print(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}

pub fn man() -> anyhow::Result<ExitCode> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    print(&String::from_utf8_lossy(&page))?;
    Ok(ExitCode::SUCCESS)
}
