//! The commands about schedules themselves: `schedules` (validate and list
//! with next firings and last decisions), `pause` and `resume`.
//!
//! Owns their wiring; the listing is the daemon's, the record the
//! journal's.

use std::process::ExitCode;

use chrono::Utc;

use super::context::Context;
use super::output::{emit, print};
use super::render;
use crate::schedule;

pub fn list(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let settings = ctx.settings()?;
    let schedules = schedule::load_dir(&settings.schedules.dir, Utc::now().date_naive())?;
    let listing = crate::daemon::listing(&schedules, ctx.journal()?, Utc::now())?;
    emit(json, &listing, |listing| render::schedules(listing))?;
    Ok(ExitCode::SUCCESS)
}

/// `pause` (`pause` true) or `resume`.
pub fn set_paused(ctx: &Context, name: &str, pause: bool) -> anyhow::Result<ExitCode> {
    let settings = ctx.settings()?;
    let found = schedule::find(&settings.schedules.dir, name, Utc::now().date_naive())?;
    let changed = ctx.journal()?.set_paused(&found.name, pause)?;
    let state = if pause { "paused" } else { "resumed" };
    print(&match changed {
        true => format!("schedule `{}` {state}\n", found.name),
        false => format!("schedule `{}` was already {state}\n", found.name),
    })?;
    Ok(ExitCode::SUCCESS)
}
