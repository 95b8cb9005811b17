//! The commands that collect: `backfill --dry-run`, `run` (the daemon)
//! and `amc-sim` (the simulator alone). `backfill`, `rerun` and `cancel`
//! themselves are `operations`' (in process, or requests to the daemon).
//!
//! Owns their wiring and exit codes; the work is `collect`'s and
//! `daemon`'s.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{NaiveDate, Utc};

use super::context::Context;
use super::output::print;
use super::shutdown_signal;
use crate::amc::client::{Client, http_client};
use crate::amc::simulator::{self, SimConfig, Simulator};
use crate::collect::backfill;
use crate::schedule;

/// `backfill --dry-run [--from D --to D]`: needs no daemon, credentials
/// or lock; plans on a copy of the journal.
pub fn dry_run(
    ctx: &Context,
    name: &str,
    range: Option<(NaiveDate, NaiveDate)>,
) -> anyhow::Result<ExitCode> {
    let settings = ctx.settings()?;
    let schedule = schedule::find(&settings.schedules.dir, name, Utc::now().date_naive())?;
    let today = Utc::now().with_timezone(&schedule.timezone).date_naive();
    print(&backfill::dry_run(settings, &schedule, today, range)?)?;
    Ok(ExitCode::SUCCESS)
}

/// `chronicle run`: the daemon, until a stop signal.
pub async fn daemon(ctx: &Context) -> anyhow::Result<ExitCode> {
    let settings = ctx.settings()?;
    let schedules = schedule::load_dir(&settings.schedules.dir, Utc::now().date_naive())?;
    settings.require_amc_credentials()?;
    let journal = ctx.journal()?.clone();
    let api = Client::new(&settings.amc, http_client());
    let control = crate::daemon::os_signals()?;
    crate::daemon::run(settings.clone(), schedules, journal, api, control).await?;
    Ok(ExitCode::SUCCESS)
}

/// `chronicle amc-sim`: the simulator alone, to point a config at.
pub async fn simulator(
    listen: SocketAddr,
    execution_duration: Duration,
) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let config = SimConfig {
        execution_duration,
        ..SimConfig::default()
    };
    print(&format!(
        "AMC simulator on http://{listen}\n  [amc] base_url = \"http://{listen}\"\n        token_url = \"http://{listen}/auth/o2/token\"\n        client_id = \"{}\", client_secret = \"{}\", refresh_token = \"{}\"\n",
        config.client_id, config.client_secret, config.refresh_token
    ))?;
    simulator::serve(listener, Simulator::new(config), shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
