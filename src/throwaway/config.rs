//! The config file of a chronicle pointed at a running simulator (and a
//! throwaway Postgres): one writer for the demo, the tests and the
//! benchmarks, so a new setting reaches all of them at once.
//!
//! Owns the file's text only; loading it is `settings`'.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::amc::simulator::RunningSimulator;

/// What differs between the setups that write one.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub base_url: String,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    pub advertiser_id: String,
    pub poll_interval: Duration,
    /// Empty: journal only.
    pub postgres_url: Option<String>,
    /// Further `[amc]` lines, e.g. fast retries for fault tests.
    pub amc_extra: String,
    /// Further sections, e.g. `[reconciler]`.
    pub extra: String,
}

impl ConfigFile {
    /// A config for `sim`'s endpoints and credentials, journal in
    /// `journal.db` and schedules in `schedules/` beside the file.
    pub fn for_simulator(sim: &RunningSimulator) -> ConfigFile {
        let (client_id, client_secret, refresh_token) = sim.simulator.credentials();
        ConfigFile {
            base_url: sim.base_url.clone(),
            token_url: sim.token_url.clone(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            refresh_token: refresh_token.to_owned(),
            advertiser_id: "ADV1".to_owned(),
            poll_interval: Duration::from_millis(20),
            postgres_url: None,
            amc_extra: String::new(),
            extra: String::new(),
        }
    }

    pub fn postgres(mut self, url: &str) -> ConfigFile {
        self.postgres_url = Some(url.to_owned());
        self
    }

    pub fn poll_interval(mut self, every: Duration) -> ConfigFile {
        self.poll_interval = every;
        self
    }

    pub fn advertiser(mut self, id: &str) -> ConfigFile {
        self.advertiser_id = id.to_owned();
        self
    }

    pub fn amc(mut self, lines: &str) -> ConfigFile {
        self.amc_extra.push_str(lines);
        self.amc_extra.push('\n');
        self
    }

    pub fn section(mut self, text: &str) -> ConfigFile {
        self.extra.push_str(text);
        self.extra.push('\n');
        self
    }

    pub fn render(&self) -> String {
        let postgres = match &self.postgres_url {
            Some(url) => format!("\n[postgres]\nurl = \"{url}\"\n"),
            None => String::new(),
        };
        format!(
            r#"[journal]
path = "journal.db"

[schedules]
dir = "schedules"

[amc]
base_url = "{}"
token_url = "{}"
client_id = "{}"
client_secret = "{}"
refresh_token = "{}"
advertiser_id = "{}"
marketplace_id = "ATVPDKIKX0DER"
poll_interval = "{}ms"
{}{postgres}
{}"#,
            self.base_url,
            self.token_url,
            self.client_id,
            self.client_secret,
            self.refresh_token,
            self.advertiser_id,
            self.poll_interval.as_millis(),
            self.amc_extra,
            self.extra
        )
    }

    /// Writes `config.toml` in `dir` and returns its path.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join("config.toml");
        std::fs::write(&path, self.render())?;
        Ok(path)
    }
}
