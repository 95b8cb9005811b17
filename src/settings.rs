//! Typed configuration: built-in defaults, then the config file, then
//! `CHRONICLE_*` environment variables (`__` between levels).
//!
//! Owns loading, validation of the keys' values and the wrapping of secrets.
//! It does not read schedule files (see `schedule`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::warehouse::tls::{self, TlsMode, TlsOptions};

/// A configuration problem, named by file and key where figment knows them.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} not found")]
    Missing(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub journal: JournalSettings,
    pub schedules: ScheduleSettings,
    pub amc: AmcSettings,
    pub postgres: PostgresSettings,
    pub reconciler: ReconcilerSettings,
    pub scheduler: SchedulerSettings,
    /// Health and metrics endpoints; off unless `listen` is set.
    #[serde(default)]
    pub http: HttpSettings,
    /// Where the daemon sends alerts; none unless a URL is set.
    #[serde(default)]
    pub alerts: AlertSettings,
    /// How commands wait for requests the running daemon carries out.
    #[serde(default)]
    pub requests: RequestSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Receives each alert as a JSON object (header `X-Chronicle-Alert-Id`
    /// and the body's `id` to deduplicate on). A secret: such URLs carry
    /// tokens, so it is never logged or printed.
    pub webhook_url: SecretString,
    /// A Slack incoming webhook: each alert as `{"text": ...}`.
    pub slack_webhook_url: SecretString,
    /// Sync failing for longer than this raises an alert.
    #[serde(with = "humantime_serde")]
    pub sync_lag: Duration,
    /// One delivery try may take this long before it counts as failed.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for AlertSettings {
    fn default() -> AlertSettings {
        AlertSettings {
            webhook_url: SecretString::default(),
            slack_webhook_url: SecretString::default(),
            sync_lag: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
        }
    }
}

/// A configured alert receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Receiver {
    /// `alerts.webhook_url`: chronicle's JSON object.
    Webhook,
    /// `alerts.slack_webhook_url`: Slack's `{"text": ...}`.
    Slack,
}

impl Receiver {
    /// The word the journal keeps deliveries under.
    pub fn as_str(self) -> &'static str {
        match self {
            Receiver::Webhook => "webhook",
            Receiver::Slack => "slack",
        }
    }
}

impl AlertSettings {
    /// The receivers with a URL, and the URL (a secret).
    pub fn receivers(&self) -> Vec<(Receiver, &str)> {
        use secrecy::ExposeSecret;
        [
            (Receiver::Webhook, &self.webhook_url),
            (Receiver::Slack, &self.slack_webhook_url),
        ]
        .into_iter()
        .map(|(receiver, url)| (receiver, url.expose_secret().trim()))
        .filter(|(_, url)| !url.is_empty())
        .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestSettings {
    /// How long `rerun`, `backfill` and `cancel` wait for the running
    /// daemon to carry their request out (`--wait` wins, `--no-wait`
    /// returns at once); the request stands either way.
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
}

impl Default for RequestSettings {
    fn default() -> RequestSettings {
        RequestSettings {
            wait: Duration::from_secs(6 * 3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSettings {
    /// The SQLite journal; relative paths are taken from the config file's
    /// folder so a systemd unit and a shell agree on which file it is.
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Folder of `*.toml` schedule files, one collection each.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmcSettings {
    /// Regional API endpoint, e.g. `https://advertising-api.amazon.com`.
    pub base_url: String,
    /// Login with Amazon token endpoint.
    pub token_url: String,
    /// Empty until the user provides it; checked by commands that call AMC.
    #[serde(deserialize_with = "text")]
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
    #[serde(deserialize_with = "text")]
    pub advertiser_id: String,
    #[serde(deserialize_with = "text")]
    pub marketplace_id: String,
    /// AMC allows 10 concurrent executions per instance through the API.
    pub max_concurrent_executions: usize,
    /// Executions take 15 minutes or more; polling faster buys nothing.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Executions chronicle did not start (another tool, a person in the
    /// console) share the instance's limit; counting them avoids being
    /// refused by AMC for going over it.
    pub count_foreign_executions: bool,
    /// Tries per API call, the first included, for throttling, 5xx,
    /// timeouts and connection errors.
    pub retry_attempts: u32,
    /// No retry of a call starts later than this after its first try, so
    /// an outage turns into a clear error instead of an endless wait.
    #[serde(with = "humantime_serde")]
    pub retry_max_elapsed: Duration,
    /// Ceiling of the first backoff (doubled each retry, full jitter).
    #[serde(with = "humantime_serde")]
    pub retry_min_delay: Duration,
    /// Cap of the doubling backoff.
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// One API call may take this long before its outcome counts as unknown.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Decompressed bytes one result may have; a bigger one fails the
    /// attempt rather than filling the disk or running for hours.
    pub max_result_bytes: u64,
    /// When set, each result is kept as `<AMC execution id>.csv` here, for
    /// users who want the data itself, not only its count and checksum.
    /// Relative to the config file's folder.
    pub results_dir: Option<PathBuf>,
}

impl AmcSettings {
    /// The longest one create call may take, token refresh, `Retry-After`
    /// pauses and retries of a create that provably did not arrive
    /// included: the runner cuts the call there, so AMC can only have
    /// received an attempt's POST within this of its intent (adoption's
    /// bound, ARCHITECTURE.md "Crash windows").
    pub fn create_span(&self) -> Duration {
        self.retry_max_elapsed
            .saturating_mul(2)
            .saturating_add(self.request_timeout.saturating_mul(3))
    }

    pub fn retry_policy(&self) -> crate::amc::client::retry::RetryPolicy {
        crate::amc::client::retry::RetryPolicy {
            attempts: self.retry_attempts,
            max_elapsed: self.retry_max_elapsed,
            min_delay: self.retry_min_delay,
            max_delay: self.retry_max_delay,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// Empty means journal only: nothing is synced and nothing fails for it.
    pub url: SecretString,
    /// `disable`, `require` or `verify-full`, as libpq's `sslmode`: Supabase
    /// is reached over the internet with a password, so it is encrypted by
    /// default. Unset: the URL's own `sslmode=disable|require`, else
    /// `require` when `ca_file` is set or the host is not this machine, else
    /// `disable` (see `tls::TlsOptions::mode_for`). Set, it wins
    /// over any `sslmode` in the URL.
    pub tls: Option<TlsMode>,
    /// PEM file of the CA to trust instead of this machine's roots: Supabase
    /// signs its servers with its own CA. Relative paths are taken from the
    /// config file's folder, like `journal.path`.
    pub ca_file: Option<PathBuf>,
    /// Longest a statement of chronicle's may run in Postgres: a sync stuck
    /// behind another session (or a slow server) ends here, and its updates
    /// wait in the journal for the next sync.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Longest chronicle waits for a lock another session holds on a row or
    /// table it writes.
    #[serde(with = "humantime_serde")]
    pub lock_timeout: Duration,
    /// Rows of each result kept as `workflow_executions.result_rows` for
    /// the application's dashboards (the first ones); 0 keeps none. The
    /// count, checksum and `summary_stats` always cover every row.
    pub result_rows_limit: usize,
}

/// `postgres.result_rows_limit` unless configured.
pub const DEFAULT_RESULT_ROWS_LIMIT: usize = 10_000;

/// `result_rows` is one jsonb value of one row: past this many rows it
/// would outgrow what a dashboard reads and what Postgres holds in a value.
const MAX_RESULT_ROWS_LIMIT: usize = 100_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcilerSettings {
    /// How often the daemon drains the outbox into Postgres.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Tracking rows per Postgres transaction.
    pub batch_size: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Firings missed while the daemon was down are caught up (once) only
    /// this far back; a schedule file's `catchup_window` overrides it.
    #[serde(with = "humantime_serde")]
    pub catchup_window: Duration,
    /// After SIGTERM/SIGINT, how long runs may finish their in-flight AMC
    /// calls before they are cut; the final sync gets as long again.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// How often the schedules folder is checked for changes (reloaded as
    /// on SIGHUP when a file is added, removed or modified); unset: only
    /// SIGHUP reloads.
    #[serde(default, with = "humantime_serde")]
    pub watch_interval: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address for /healthz and /metrics, e.g. `127.0.0.1:9187`; unset
    /// serves nothing.
    pub listen: Option<SocketAddr>,
    /// How long a client may take to send a request's head; past it the
    /// connection is closed, so a stalled client cannot hold one for ever.
    /// (At a stop, open connections get `scheduler.shutdown_timeout`.)
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> HttpSettings {
        HttpSettings {
            listen: None,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// The defaults, as the figment layer every other source overrides.
#[derive(Serialize)]
struct Defaults {
    journal: DefaultJournal,
    schedules: DefaultSchedules,
    amc: DefaultAmc,
    postgres: DefaultPostgres,
    reconciler: DefaultReconciler,
    scheduler: DefaultScheduler,
}

#[derive(Serialize)]
struct DefaultJournal {
    path: &'static str,
}

#[derive(Serialize)]
struct DefaultSchedules {
    dir: &'static str,
}

#[derive(Serialize)]
struct DefaultAmc {
    base_url: &'static str,
    token_url: &'static str,
    client_id: &'static str,
    client_secret: &'static str,
    refresh_token: &'static str,
    advertiser_id: &'static str,
    marketplace_id: &'static str,
    max_concurrent_executions: usize,
    poll_interval: &'static str,
    count_foreign_executions: bool,
    retry_attempts: u32,
    retry_max_elapsed: &'static str,
    retry_min_delay: &'static str,
    retry_max_delay: &'static str,
    request_timeout: &'static str,
    max_result_bytes: u64,
}

#[derive(Serialize)]
struct DefaultPostgres {
    url: &'static str,
    statement_timeout: &'static str,
    lock_timeout: &'static str,
    result_rows_limit: usize,
}

#[derive(Serialize)]
struct DefaultScheduler {
    catchup_window: &'static str,
    shutdown_timeout: &'static str,
}

#[derive(Serialize)]
struct DefaultReconciler {
    interval: &'static str,
    batch_size: usize,
}

const DEFAULTS: Defaults = Defaults {
    journal: DefaultJournal {
        path: "chronicle.db",
    },
    schedules: DefaultSchedules { dir: "schedules" },
    amc: DefaultAmc {
        base_url: "https://advertising-api.amazon.com",
        token_url: "https://api.amazon.com/auth/o2/token",
        client_id: "",
        client_secret: "",
        refresh_token: "",
        advertiser_id: "",
        marketplace_id: "",
        max_concurrent_executions: 10,
        poll_interval: "30s",
        count_foreign_executions: false,
        retry_attempts: 6,
        retry_max_elapsed: "2m",
        retry_min_delay: "500ms",
        retry_max_delay: "30s",
        request_timeout: "60s",
        max_result_bytes: 10 * 1024 * 1024 * 1024,
    },
    postgres: DefaultPostgres {
        url: "",
        statement_timeout: "60s",
        lock_timeout: "10s",
        result_rows_limit: DEFAULT_RESULT_ROWS_LIMIT,
    },
    reconciler: DefaultReconciler {
        interval: "60s",
        batch_size: 5000,
    },
    scheduler: DefaultScheduler {
        catchup_window: "7days",
        shutdown_timeout: "30s",
    },
};

impl Settings {
    /// Loads settings. `explicit` is true when the user named the file, in
    /// which case its absence is an error rather than "use the defaults".
    pub fn load(path: &Path, explicit: bool) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(DEFAULTS));
        if path.exists() {
            figment = figment.merge(Toml::file_exact(path));
        } else if explicit {
            return Err(ConfigError::Missing(path.to_path_buf()));
        }
        // Only `SECTION__KEY` variables are configuration; others with the
        // prefix (CHRONICLE_TEST_DATABASE_URL, ...) belong to other tools.
        figment = figment.merge(
            Env::prefixed("CHRONICLE_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        let mut settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        settings.validate()?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        settings.journal.path = base.join(&settings.journal.path);
        settings.schedules.dir = base.join(&settings.schedules.dir);
        settings.amc.results_dir = settings
            .amc
            .results_dir
            .take()
            .filter(|path| !path.as_os_str().is_empty())
            .map(|path| base.join(path));
        // An empty value (say, an exported but blank variable) means unset.
        settings.postgres.ca_file = settings
            .postgres
            .ca_file
            .take()
            .filter(|path| !path.as_os_str().is_empty())
            .map(|path| base.join(path));
        // Checked now, so a bad CA file stops the command with exit 2 before
        // anything is sent, like every other configuration mistake. It is
        // read again at each connection.
        if let Some(path) = &settings.postgres.ca_file {
            tls::read_ca_file(path).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |key: &str, why: &str| Err(ConfigError::Invalid(format!("key `{key}`: {why}")));
        if self.amc.max_concurrent_executions == 0 {
            return invalid("amc.max_concurrent_executions", "must be at least 1");
        }
        if self.amc.poll_interval.is_zero() {
            return invalid("amc.poll_interval", "must be longer than zero");
        }
        if self.amc.retry_attempts == 0 {
            return invalid("amc.retry_attempts", "must be at least 1 (the first try)");
        }
        if self.amc.retry_min_delay > self.amc.retry_max_delay {
            return invalid(
                "amc.retry_min_delay",
                "must not be longer than amc.retry_max_delay",
            );
        }
        if self.amc.request_timeout.is_zero() {
            return invalid("amc.request_timeout", "must be longer than zero");
        }
        if self.amc.max_result_bytes == 0 {
            return invalid("amc.max_result_bytes", "must be at least 1");
        }
        if self.postgres.result_rows_limit > MAX_RESULT_ROWS_LIMIT {
            return invalid(
                "postgres.result_rows_limit",
                &format!("must be at most {MAX_RESULT_ROWS_LIMIT} (0 keeps no rows)"),
            );
        }
        if self.reconciler.interval.is_zero() {
            return invalid("reconciler.interval", "must be longer than zero");
        }
        if self.scheduler.watch_interval.is_some_and(|d| d.is_zero()) {
            return invalid("scheduler.watch_interval", "must be longer than zero");
        }
        if self.scheduler.shutdown_timeout.is_zero() {
            return invalid("scheduler.shutdown_timeout", "must be longer than zero");
        }
        if self.http.header_read_timeout.is_zero() {
            return invalid("http.header_read_timeout", "must be longer than zero");
        }
        if self.reconciler.batch_size == 0 {
            return invalid("reconciler.batch_size", "must be at least 1");
        }
        if self.alerts.sync_lag.is_zero() {
            return invalid("alerts.sync_lag", "must be longer than zero");
        }
        if self.alerts.timeout.is_zero() {
            return invalid("alerts.timeout", "must be longer than zero");
        }
        if self.requests.wait.is_zero() {
            return invalid(
                "requests.wait",
                "must be longer than zero (`--no-wait` returns at once)",
            );
        }
        // The URLs hold tokens: the error names the key, never the value.
        for (receiver, url) in self.alerts.receivers() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                let key = match receiver {
                    Receiver::Webhook => "alerts.webhook_url",
                    Receiver::Slack => "alerts.slack_webhook_url",
                };
                return invalid(
                    key,
                    "is not an http(s) URL (its value is not shown: it is a secret)",
                );
            }
        }
        for (key, url) in [
            ("amc.base_url", &self.amc.base_url),
            ("amc.token_url", &self.amc.token_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid(key, &format!("`{url}` is not an http(s) URL"));
            }
        }
        Ok(())
    }

    /// Commands that call AMC need every credential; the error names the
    /// first missing key and the variable that would set it.
    pub fn require_amc_credentials(&self) -> Result<(), ConfigError> {
        use secrecy::ExposeSecret;
        let amc = &self.amc;
        let keys = [
            ("client_id", amc.client_id.as_str()),
            ("client_secret", amc.client_secret.expose_secret()),
            ("refresh_token", amc.refresh_token.expose_secret()),
            ("advertiser_id", amc.advertiser_id.as_str()),
            ("marketplace_id", amc.marketplace_id.as_str()),
        ];
        match keys.iter().find(|(_, value)| value.trim().is_empty()) {
            Some((key, _)) => Err(ConfigError::Invalid(format!(
                "key `amc.{key}` is missing: set it in the config file or as CHRONICLE_AMC__{}",
                key.to_uppercase()
            ))),
            None => Ok(()),
        }
    }

    pub fn postgres_url(&self) -> Option<&str> {
        use secrecy::ExposeSecret;
        Some(self.postgres.url.expose_secret().trim()).filter(|url| !url.is_empty())
    }

    /// What a Postgres connection needs besides the URL.
    /// Where and how to reach Postgres; `None` when `postgres.url` is empty.
    pub fn postgres_target(&self) -> Option<crate::warehouse::Target> {
        Some(crate::warehouse::Target {
            url: self.postgres_url()?.to_owned(),
            tls: self.postgres_tls(),
            timeouts: crate::warehouse::Timeouts {
                statement: self.postgres.statement_timeout,
                lock: self.postgres.lock_timeout,
            },
        })
    }

    pub fn postgres_tls(&self) -> TlsOptions {
        TlsOptions {
            mode: self.postgres.tls,
            ca_file: self.postgres.ca_file.clone(),
        }
    }
}

/// Ids look like numbers often enough (`CHRONICLE_AMC__ADVERTISER_ID=1234`)
/// that an environment variable must not turn one into a type error.
fn text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        String(String),
        Unsigned(u64),
        Signed(i64),
    }
    Ok(match Text::deserialize(deserializer)? {
        Text::String(text) => text,
        Text::Unsigned(number) => number.to_string(),
        Text::Signed(number) => number.to_string(),
    })
}

/// figment's own text names the key and the file; keep all of its errors.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(config: &str) -> (tempfile::TempDir, Result<Settings, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).unwrap();
        let settings = Settings::load(&path, true);
        (dir, settings)
    }

    #[test]
    fn result_rows_limit_defaults_to_ten_thousand_and_is_bounded() {
        let (_dir, settings) = load("");
        assert_eq!(settings.unwrap().postgres.result_rows_limit, 10_000);
        let (_dir, settings) = load("[postgres]\nresult_rows_limit = 0\n");
        assert_eq!(settings.unwrap().postgres.result_rows_limit, 0);
        let (_dir, settings) = load("[postgres]\nresult_rows_limit = 1000000\n");
        let error = settings.unwrap_err().to_string();
        assert!(error.contains("postgres.result_rows_limit"), "{error}");
        let (_dir, settings) = load("[postgres]\nresult_rows_limit = -1\n");
        assert!(
            settings
                .unwrap_err()
                .to_string()
                .contains("result_rows_limit")
        );
    }

    #[test]
    fn alert_keys_have_defaults_and_a_bad_url_is_named_without_its_value() {
        let (_dir, settings) = load("");
        let settings = settings.unwrap();
        assert!(settings.alerts.receivers().is_empty());
        assert_eq!(settings.alerts.sync_lag, Duration::from_secs(3600));
        assert_eq!(settings.requests.wait, Duration::from_secs(6 * 3600));
        let (_dir, settings) = load(
            "[alerts]\nwebhook_url = \"https://hooks.example/T0K3N\"\nslack_webhook_url = \" \"\n",
        );
        let receivers: Vec<_> = settings
            .unwrap()
            .alerts
            .receivers()
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        assert_eq!(receivers, [Receiver::Webhook], "a blank URL is unset");
        let (_dir, settings) = load("[alerts]\nslack_webhook_url = \"hooks/T0K3N\"\n");
        let error = settings.unwrap_err().to_string();
        assert!(error.contains("alerts.slack_webhook_url"), "{error}");
        assert!(!error.contains("T0K3N"), "the URL is a secret: {error}");
        let (_dir, settings) = load("[alerts]\nsync_lag = \"0s\"\n");
        assert!(
            settings
                .unwrap_err()
                .to_string()
                .contains("alerts.sync_lag")
        );
    }

    #[test]
    fn tls_and_ca_file_are_unset_by_default() {
        let (_dir, settings) = load("");
        let tls = settings.unwrap().postgres_tls();
        assert_eq!((tls.mode, tls.ca_file), (None, None));
    }

    #[test]
    fn an_unknown_tls_mode_names_the_key() {
        let (_dir, settings) = load("[postgres]\ntls = \"verify-ca\"\n");
        let error = settings.unwrap_err().to_string();
        assert!(error.contains("postgres.tls"), "{error}");
        assert!(error.contains("verify-full"), "{error}");
    }

    #[test]
    fn a_ca_file_is_read_from_the_config_folder_and_checked_at_load() {
        let (dir, settings) = load("[postgres]\ntls = \"require\"\nca_file = \"ca.pem\"\n");
        let error = settings.unwrap_err().to_string();
        assert!(error.contains("postgres.ca_file"), "{error}");
        let path = dir.path().join("ca.pem");
        assert!(error.contains(&path.display().to_string()), "{error}");
    }

    #[test]
    fn scheduler_and_http_keys_have_defaults_and_are_checked() {
        let (_dir, settings) = load("");
        let settings = settings.unwrap();
        assert_eq!(
            settings.scheduler.catchup_window,
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(settings.scheduler.watch_interval, None);
        assert_eq!(settings.http.listen, None);
        let (_dir, settings) =
            load("[http]\nlisten = \"127.0.0.1:9187\"\n[scheduler]\nwatch_interval = \"5s\"\n");
        let settings = settings.unwrap();
        assert_eq!(
            settings.http.listen,
            Some("127.0.0.1:9187".parse().unwrap())
        );
        assert_eq!(
            settings.scheduler.watch_interval,
            Some(Duration::from_secs(5))
        );
        let (_dir, settings) = load("[scheduler]\nshutdown_timeout = \"0s\"\n");
        let error = settings.unwrap_err().to_string();
        assert!(error.contains("scheduler.shutdown_timeout"), "{error}");
        let (_dir, settings) = load("[http]\nlisten = \"not an address\"\n");
        let error = settings.unwrap_err().to_string();
        assert!(error.contains("listen"), "{error}");
        let (_dir, settings) = load("");
        assert_eq!(
            settings.unwrap().http.header_read_timeout,
            Duration::from_secs(10)
        );
        let (_dir, settings) = load("[http]\nheader_read_timeout = \"0s\"\n");
        let error = settings.unwrap_err().to_string();
        assert!(error.contains("http.header_read_timeout"), "{error}");
    }
}
