//! Supabase Postgres: the tracking tables in the shape the database has
//! (the application's, or what chronicle created on an empty one), and the
//! set-based, journal_seq guarded upserts that keep them equal to the
//! journal (I3).
//!
//! Only this module touches tokio-postgres (besides the test cluster and
//! `tls`, which builds its TLS connector). Statements are sent unnamed
//! (`*_typed`), so Supabase's transaction-mode pooler can carry them.
//!
//! The room: `migrate` (chronicle's schema and the migrations), `shape`
//! (the catalog read at connect, and what chronicle cannot write),
//! `columns` (which columns are written, and how), `refs` (the
//! application's uuids for AMC's ids), `rows` (the rows in the
//! application's words), `upsert` (one round trip per batch), `scan`
//! (Postgres's side of `verify`, streamed), `read` (the audit's chain heads
//! and attaching), `tls`.

mod columns;
mod migrate;
mod read;
mod refs;
pub mod rows;
mod scan;
mod shape;
pub mod tls;
mod upsert;

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};

use columns::Upserts;
use refs::Refs;
use shape::Shape;
use tls::{CaFileError, TlsOptions, TlsSetupError};

pub use read::{AppCollection, AppExecution, AppWeek, CollectionQuery};
pub use scan::{Dangling, Scan, WeekPopulation};
pub use shape::SchemaError;
pub use upsert::Prepared;

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("cannot reach Postgres at {target}: {why}")]
    Unreachable { target: String, why: String },
    #[error("the Postgres URL in `postgres.url` is invalid: {0}")]
    BadUrl(String),
    #[error("cannot apply Postgres migrations: {0}")]
    Migration(String),
    /// The database cannot take chronicle's rows as it is; nothing is
    /// quarantined for it, the rows wait in the journal.
    #[error("Postgres cannot take chronicle's rows: {0}")]
    Schema(#[from] SchemaError),
    #[error("Postgres refused the batch: {0}")]
    Refused(String),
    /// A statement or lock timeout (`postgres.statement_timeout`,
    /// `postgres.lock_timeout`) ended the batch: the rows wait in the
    /// journal for the next sync.
    #[error("Postgres did not finish in time: {0}")]
    TimedOut(String),
    /// Names host and port only: the URL may hold a password.
    #[error("TLS to {target} failed: {why}")]
    Tls { target: String, why: String },
    #[error(transparent)]
    CaFile(#[from] CaFileError),
}

/// How long one Postgres statement, and one wait for a lock, may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub statement: Duration,
    pub lock: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            statement: Duration::from_secs(60),
            lock: Duration::from_secs(10),
        }
    }
}

/// Where and how to reach Postgres: `[postgres]` of the settings.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub tls: TlsOptions,
    pub timeouts: Timeouts,
}

pub struct Warehouse {
    /// Shared with the batches in flight (`upsert::Prepared`).
    client: Arc<Client>,
    /// The catalog as read at connect.
    shape: Shape,
    /// The statements this database's shape needs.
    upserts: Arc<Upserts>,
    /// The application's ids for AMC's, as far as resolved.
    refs: Refs,
    timeouts: Timeouts,
}

impl Warehouse {
    /// Connects with the TLS mode `tls` chooses for this URL's host (see
    /// `tls`), applies the migrations and reads the database's shape.
    pub async fn connect(url: &str, tls: &TlsOptions) -> Result<Warehouse, WarehouseError> {
        let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
            WarehouseError::BadUrl(bad_url_text(&e.to_string()))
        })?;
        config.connect_timeout(Duration::from_secs(10));
        let mode = tls.mode_for(&config);
        let url_mode = config.get_ssl_mode();
        if url_mode != SslMode::Prefer && url_mode != tls::ssl_mode(mode) {
            tracing::debug!(tls = %mode, "`postgres.tls` overrides the sslmode of `postgres.url`");
        }
        config.ssl_mode(tls::ssl_mode(mode));
        let target = describe_target(&config);
        let failed = |e: tokio_postgres::Error| match tls::tls_failure(&e) {
            Some(why) => WarehouseError::Tls {
                target: hosts_and_ports(&config),
                why,
            },
            None => WarehouseError::Unreachable {
                target: target.clone(),
                why: error_text(&e),
            },
        };
        let connector = tls::connector(mode, tls.ca_file.as_deref()).map_err(|e| match e {
            TlsSetupError::CaFile(e) => WarehouseError::CaFile(e),
            other => WarehouseError::Tls {
                target: hosts_and_ports(&config),
                why: other.to_string(),
            },
        })?;
        // Two arms because the connection's type depends on the connector.
        let mut client = match connector {
            None => {
                let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
                tokio::spawn(drive(connection));
                client
            }
            Some(connector) => {
                let (client, connection) = config.connect(connector).await.map_err(failed)?;
                tokio::spawn(drive(connection));
                client
            }
        };
        tracing::debug!(target = %target, tls = %mode, "connected to Postgres");
        migrate::run(&mut client).await?;
        let shape = shape::read(&client).await?;
        let upserts = Arc::new(Upserts::plan(&shape)?);
        Ok(Warehouse {
            client: Arc::new(client),
            shape,
            upserts,
            refs: Refs::default(),
            timeouts: Timeouts::default(),
        })
    }

    /// Connects to `target`, bounded by its timeouts.
    pub async fn open(target: &Target) -> Result<Warehouse, WarehouseError> {
        Ok(Warehouse::connect(&target.url, &target.tls)
            .await?
            .with_timeouts(target.timeouts))
    }

    /// Bounds every later batch and read by these timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Warehouse {
        self.timeouts = timeouts;
        self
    }

    /// Per table, parents first, the columns a batch rewrites in a row
    /// Postgres already holds (`journal_seq` among them, never `id`): what
    /// the reconciler benchmark's COPY floor writes too.
    pub fn rewritten_columns(&self) -> [(&'static str, &[&'static str]); 3] {
        [
            &self.upserts.collections,
            &self.upserts.executions,
            &self.upserts.weeks,
        ]
        .map(|upsert| (upsert.table, upsert.rewritten.as_slice()))
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Checks that Postgres can take the rows of collections of these AMC
    /// workflows and instances: on the application's database, that the
    /// `workflows` and `amc_instances` rows they name exist (the shape
    /// itself was checked at connect). Nothing is written.
    pub async fn preflight(&mut self, collections: &[(&str, &str)]) -> Result<(), WarehouseError> {
        self.resolve(collections).await
    }

    /// Resolves the application's ids for these `(workflow, instance)`
    /// pairs, where this database references them.
    async fn resolve(&mut self, pairs: &[(&str, &str)]) -> Result<(), WarehouseError> {
        if !self.shape.references_application() {
            return Ok(());
        }
        let workflows: Vec<&str> = pairs.iter().map(|(w, _)| *w).collect();
        let instances: Vec<&str> = pairs.iter().map(|(_, i)| *i).collect();
        self.refs
            .resolve(&self.client, &workflows, &instances)
            .await
    }
}

/// `host:port/dbname` without the user or password, for error messages.
fn describe_target(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("postgres")
    )
}

/// Runs a connection until it ends; it ends by itself when its client is dropped.
async fn drive(connection: impl Future<Output = Result<(), tokio_postgres::Error>>) {
    if let Err(e) = connection.await {
        tracing::warn!(error = %e, "Postgres connection ended");
    }
}

/// `host:port` of every host, for TLS errors, which concern the host only.
fn hosts_and_ports(config: &Config) -> String {
    let names: Vec<String> = if config.get_hosts().is_empty() {
        // A URL may give only `hostaddr`; tokio-postgres then connects to those.
        config
            .get_hostaddrs()
            .iter()
            .map(|a| a.to_string())
            .collect()
    } else {
        config
            .get_hosts()
            .iter()
            .map(|host| match host {
                // Brackets keep an IPv6 address apart from the port.
                tokio_postgres::config::Host::Tcp(name) if name.contains(':') => {
                    format!("[{name}]")
                }
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect()
    };
    let ports = config.get_ports();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            // One port for all hosts, or one per host, as libpq.
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            format!("{name}:{port}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// tokio-postgres knows libpq's `sslmode` only up to `require` and no
/// `sslrootcert`: point whoever copied a libpq URL at our keys.
fn bad_url_text(error: &str) -> String {
    if error.contains("ssl") {
        format!("{error} (set TLS with `postgres.tls` and `postgres.ca_file`, not in the URL)")
    } else {
        error.to_owned()
    }
}

/// tokio-postgres hides the server's message behind "db error"; show it.
fn error_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}
