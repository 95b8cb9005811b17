//! Supabase Postgres: the tracking tables and the set-based, journal_seq
//! guarded upserts that keep them equal to the journal (I3).
//!
//! Only this module touches tokio-postgres (besides the test cluster and
//! `postgres_tls`, which builds its TLS connector). It
//! owns the Postgres migrations. Statements are sent unnamed
//! (`*_typed`), so the transaction-mode pooler of Supabase can carry them.

pub mod rows;
pub mod tls;

use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Config, NoTls};

use chrono::NaiveDate;

use crate::warehouse::rows::{Batch, CollectionRow, ExecutionRow, WeekRow};
use tls::{CaFileError, TlsOptions, TlsSetupError};

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("cannot reach Postgres at {target}: {why}")]
    Unreachable { target: String, why: String },
    #[error("the Postgres URL in `postgres.url` is invalid: {0}")]
    BadUrl(String),
    #[error("cannot apply Postgres migrations: {0}")]
    Migration(String),
    #[error("Postgres refused the batch: {0}")]
    Refused(String),
    /// Names host and port only: the URL may hold a password.
    #[error("TLS to {target} failed: {why}")]
    Tls { target: String, why: String },
    #[error(transparent)]
    CaFile(#[from] CaFileError),
}

pub struct Warehouse {
    client: Client,
}

impl Warehouse {
    /// Connects with the TLS mode `tls` chooses for this URL's host (see
    /// `postgres_tls`) and applies the embedded migrations.
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
        embedded::migrations::runner()
            .run_async(&mut client)
            .await
            .map_err(|e| WarehouseError::Migration(e.to_string()))?;
        Ok(Warehouse { client })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Lands one batch in one transaction, parents first. A row is never
    /// overwritten by an older journal state; the same state may be written
    /// again (that is how `verify --repair` mends a row edited by hand).
    ///
    /// BEGIN, the three upserts and COMMIT are pipelined: one round trip per
    /// batch, which is what matters with Postgres a region away.
    pub async fn apply(&mut self, batch: &Batch) -> Result<(), WarehouseError> {
        let refused = |e: tokio_postgres::Error| {
            // "Current transaction is aborted" blames the session, not a
            // row: never quarantine for it, retry the batch instead.
            let session =
                e.code() == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION);
            if session || e.is_closed() || e.as_db_error().is_none() {
                WarehouseError::Unreachable {
                    target: "the connected server".into(),
                    why: error_text(&e),
                }
            } else {
                WarehouseError::Refused(error_text(&e))
            }
        };
        let collections = CollectionColumns::of(&batch.collections);
        let executions = ExecutionColumns::of(&batch.executions);
        let weeks = WeekColumns::of(&batch.weeks);
        let (collections, executions, weeks) =
            (collections.params(), executions.params(), weeks.params());
        let client = &self.client;
        // Biased: the first poll sends each request in this order. Every
        // answer is awaited, COMMIT's too, so a failed batch always ends its
        // transaction (Postgres turns that COMMIT into a ROLLBACK) before
        // the session is used again.
        let (begin, upserted_collections, upserted_executions, upserted_weeks, commit) = tokio::join!(
            biased;
            client.batch_execute("BEGIN"),
            upsert(client, UPSERT_COLLECTIONS, &collections, batch.collections.len()),
            upsert(client, UPSERT_EXECUTIONS, &executions, batch.executions.len()),
            upsert(client, UPSERT_WEEKS, &weeks, batch.weeks.len()),
            client.batch_execute("COMMIT"),
        );
        begin
            .and(upserted_collections)
            .and(upserted_executions)
            .and(upserted_weeks)
            .and(commit)
            .map_err(refused)
    }

    /// Records the journal's chain head as Postgres sees it at this sync
    /// (`chronicle_chain_heads`); the same head twice is one row.
    pub async fn record_chain_head(
        &self,
        journal_id: &str,
        seq: i64,
        hash: &str,
    ) -> Result<(), WarehouseError> {
        self.client
            .execute_typed(
                "INSERT INTO chronicle_chain_heads (journal_id, seq, hash) VALUES ($1, $2, $3)
                 ON CONFLICT (journal_id, seq) DO NOTHING",
                &[
                    (&journal_id, Type::TEXT),
                    (&seq, Type::INT8),
                    (&hash, Type::TEXT),
                ],
            )
            .await
            .map(|_| ())
            .map_err(|e| WarehouseError::Refused(error_text(&e)))
    }

    /// Every chain head recorded for `journal_id`, oldest first, as
    /// `(seq, hash)`, and whether heads of other journals exist.
    pub async fn chain_heads(
        &self,
        journal_id: &str,
    ) -> Result<(Vec<(i64, String)>, bool), WarehouseError> {
        let read = |e: tokio_postgres::Error| WarehouseError::Refused(error_text(&e));
        let heads = self
            .client
            .query_typed(
                "SELECT seq, hash FROM chronicle_chain_heads WHERE journal_id = $1 ORDER BY seq",
                &[(&journal_id, Type::TEXT)],
            )
            .await
            .map_err(read)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let others: bool = self
            .client
            .query_typed(
                "SELECT EXISTS (SELECT 1 FROM chronicle_chain_heads WHERE journal_id <> $1)",
                &[(&journal_id, Type::TEXT)],
            )
            .await
            .map_err(read)?[0]
            .get(0);
        Ok((heads, others))
    }

    /// Every tracking row in Postgres, for `verify` to compare with the
    /// journal. Rows written by other tools may lack `journal_seq` (0 here).
    pub async fn all_rows(&self) -> Result<Batch, WarehouseError> {
        let read = |e: tokio_postgres::Error| WarehouseError::Refused(error_text(&e));
        let collections = self
            .client
            .query_typed(
                "SELECT id, coalesce(name, ''), coalesce(workflow_id, ''), coalesce(instance_id, ''),
                    start_date, end_date, coalesce(status, ''), coalesce(weeks_completed, 0),
                    created_at, updated_at, coalesce(journal_seq, 0)
                 FROM report_data_collections",
                &[],
            )
            .await
            .map_err(read)?
            .iter()
            .map(|r| CollectionRow {
                id: r.get(0),
                name: r.get(1),
                workflow_id: r.get(2),
                instance_id: r.get(3),
                start_date: r.get::<_, Option<NaiveDate>>(4).unwrap_or_default(),
                end_date: r.get(5),
                status: r.get(6),
                weeks_completed: r.get(7),
                created_at: r.get(8),
                updated_at: r.get(9),
                journal_seq: r.get(10),
            })
            .collect();
        let executions = self
            .client
            .query_typed(
                "SELECT id, amc_execution_id, coalesce(workflow_id, ''), coalesce(instance_id, ''),
                    coalesce(status, ''), coalesce(execution_parameters, 'null'::jsonb), started_at,
                    completed_at, row_count, error_message, coalesce(triggered_by, ''),
                    created_at, updated_at, coalesce(journal_seq, 0)
                 FROM workflow_executions",
                &[],
            )
            .await
            .map_err(read)?
            .iter()
            .map(|r| ExecutionRow {
                id: r.get(0),
                amc_execution_id: r.get(1),
                workflow_id: r.get(2),
                instance_id: r.get(3),
                status: r.get(4),
                execution_parameters: r.get(5),
                started_at: r.get(6),
                completed_at: r.get(7),
                row_count: r.get(8),
                error_message: r.get(9),
                triggered_by: r.get(10),
                created_at: r.get(11),
                updated_at: r.get(12),
                journal_seq: r.get(13),
            })
            .collect();
        let weeks = self
            .client
            .query_typed(
                "SELECT id, collection_id, week_start_date, week_end_date, coalesce(status, ''),
                    execution_id, amc_execution_id, started_at, completed_at, record_count,
                    data_checksum, error_message, created_at, updated_at, coalesce(journal_seq, 0)
                 FROM report_data_weeks WHERE collection_id IS NOT NULL
                   AND week_start_date IS NOT NULL",
                &[],
            )
            .await
            .map_err(read)?
            .iter()
            .map(|r| WeekRow {
                id: r.get(0),
                collection_id: r.get(1),
                week_start_date: r.get(2),
                week_end_date: r.get::<_, Option<NaiveDate>>(3).unwrap_or_default(),
                status: r.get(4),
                execution_id: r.get(5),
                amc_execution_id: r.get(6),
                started_at: r.get(7),
                completed_at: r.get(8),
                record_count: r.get(9),
                data_checksum: r.get(10),
                error_message: r.get(11),
                created_at: r.get(12),
                updated_at: r.get(13),
                journal_seq: r.get(14),
            })
            .collect();
        Ok(Batch {
            collections,
            executions,
            weeks,
        })
    }
}

/// Skips the round trip for a table with no rows in the batch.
async fn upsert(
    client: &Client,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
    rows: usize,
) -> Result<u64, tokio_postgres::Error> {
    if rows == 0 {
        Ok(0)
    } else {
        client.execute_typed(sql, params).await
    }
}

/// One array per column of `report_data_collections`, for `unnest`.
struct CollectionColumns<'r> {
    id: Vec<uuid::Uuid>,
    name: Vec<&'r str>,
    workflow: Vec<&'r str>,
    instance: Vec<&'r str>,
    start: Vec<NaiveDate>,
    end: Vec<Option<NaiveDate>>,
    status: Vec<&'r str>,
    completed: Vec<i32>,
    created: Vec<chrono::DateTime<chrono::Utc>>,
    updated: Vec<chrono::DateTime<chrono::Utc>>,
    seq: Vec<i64>,
}

impl<'r> CollectionColumns<'r> {
    fn of(rows: &'r [CollectionRow]) -> Self {
        CollectionColumns {
            id: rows.iter().map(|r| r.id).collect(),
            name: rows.iter().map(|r| r.name.as_str()).collect(),
            workflow: rows.iter().map(|r| r.workflow_id.as_str()).collect(),
            instance: rows.iter().map(|r| r.instance_id.as_str()).collect(),
            start: rows.iter().map(|r| r.start_date).collect(),
            end: rows.iter().map(|r| r.end_date).collect(),
            status: rows.iter().map(|r| r.status.as_str()).collect(),
            completed: rows.iter().map(|r| r.weeks_completed).collect(),
            created: rows.iter().map(|r| r.created_at).collect(),
            updated: rows.iter().map(|r| r.updated_at).collect(),
            seq: rows.iter().map(|r| r.journal_seq).collect(),
        }
    }

    fn params(&self) -> Vec<(&(dyn ToSql + Sync), Type)> {
        vec![
            (&self.id, Type::UUID_ARRAY),
            (&self.name, Type::TEXT_ARRAY),
            (&self.workflow, Type::TEXT_ARRAY),
            (&self.instance, Type::TEXT_ARRAY),
            (&self.start, Type::DATE_ARRAY),
            (&self.end, Type::DATE_ARRAY),
            (&self.status, Type::TEXT_ARRAY),
            (&self.completed, Type::INT4_ARRAY),
            (&self.created, Type::TIMESTAMPTZ_ARRAY),
            (&self.updated, Type::TIMESTAMPTZ_ARRAY),
            (&self.seq, Type::INT8_ARRAY),
        ]
    }
}

/// One array per column of `workflow_executions`.
struct ExecutionColumns<'r> {
    id: Vec<uuid::Uuid>,
    amc_id: Vec<Option<&'r str>>,
    workflow: Vec<&'r str>,
    instance: Vec<&'r str>,
    status: Vec<&'r str>,
    parameters: Vec<&'r serde_json::Value>,
    started: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    completed: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    row_count: Vec<Option<i32>>,
    error: Vec<Option<&'r str>>,
    trigger: Vec<&'r str>,
    created: Vec<chrono::DateTime<chrono::Utc>>,
    updated: Vec<chrono::DateTime<chrono::Utc>>,
    seq: Vec<i64>,
}

impl<'r> ExecutionColumns<'r> {
    fn of(rows: &'r [ExecutionRow]) -> Self {
        ExecutionColumns {
            id: rows.iter().map(|r| r.id).collect(),
            amc_id: rows.iter().map(|r| r.amc_execution_id.as_deref()).collect(),
            workflow: rows.iter().map(|r| r.workflow_id.as_str()).collect(),
            instance: rows.iter().map(|r| r.instance_id.as_str()).collect(),
            status: rows.iter().map(|r| r.status.as_str()).collect(),
            parameters: rows.iter().map(|r| &r.execution_parameters).collect(),
            started: rows.iter().map(|r| r.started_at).collect(),
            completed: rows.iter().map(|r| r.completed_at).collect(),
            row_count: rows.iter().map(|r| r.row_count).collect(),
            error: rows.iter().map(|r| r.error_message.as_deref()).collect(),
            trigger: rows.iter().map(|r| r.triggered_by.as_str()).collect(),
            created: rows.iter().map(|r| r.created_at).collect(),
            updated: rows.iter().map(|r| r.updated_at).collect(),
            seq: rows.iter().map(|r| r.journal_seq).collect(),
        }
    }

    fn params(&self) -> Vec<(&(dyn ToSql + Sync), Type)> {
        vec![
            (&self.id, Type::UUID_ARRAY),
            (&self.amc_id, Type::TEXT_ARRAY),
            (&self.workflow, Type::TEXT_ARRAY),
            (&self.instance, Type::TEXT_ARRAY),
            (&self.status, Type::TEXT_ARRAY),
            (&self.parameters, Type::JSONB_ARRAY),
            (&self.started, Type::TIMESTAMPTZ_ARRAY),
            (&self.completed, Type::TIMESTAMPTZ_ARRAY),
            (&self.row_count, Type::INT4_ARRAY),
            (&self.error, Type::TEXT_ARRAY),
            (&self.trigger, Type::TEXT_ARRAY),
            (&self.created, Type::TIMESTAMPTZ_ARRAY),
            (&self.updated, Type::TIMESTAMPTZ_ARRAY),
            (&self.seq, Type::INT8_ARRAY),
        ]
    }
}

/// One array per column of `report_data_weeks`.
struct WeekColumns<'r> {
    id: Vec<uuid::Uuid>,
    collection: Vec<uuid::Uuid>,
    start: Vec<NaiveDate>,
    end: Vec<NaiveDate>,
    status: Vec<&'r str>,
    execution: Vec<Option<uuid::Uuid>>,
    amc_id: Vec<Option<&'r str>>,
    started: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    completed: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    count: Vec<Option<i32>>,
    checksum: Vec<Option<&'r str>>,
    error: Vec<Option<&'r str>>,
    created: Vec<chrono::DateTime<chrono::Utc>>,
    updated: Vec<chrono::DateTime<chrono::Utc>>,
    seq: Vec<i64>,
}

impl<'r> WeekColumns<'r> {
    fn of(rows: &'r [WeekRow]) -> Self {
        WeekColumns {
            id: rows.iter().map(|r| r.id).collect(),
            collection: rows.iter().map(|r| r.collection_id).collect(),
            start: rows.iter().map(|r| r.week_start_date).collect(),
            end: rows.iter().map(|r| r.week_end_date).collect(),
            status: rows.iter().map(|r| r.status.as_str()).collect(),
            execution: rows.iter().map(|r| r.execution_id).collect(),
            amc_id: rows.iter().map(|r| r.amc_execution_id.as_deref()).collect(),
            started: rows.iter().map(|r| r.started_at).collect(),
            completed: rows.iter().map(|r| r.completed_at).collect(),
            count: rows.iter().map(|r| r.record_count).collect(),
            checksum: rows.iter().map(|r| r.data_checksum.as_deref()).collect(),
            error: rows.iter().map(|r| r.error_message.as_deref()).collect(),
            created: rows.iter().map(|r| r.created_at).collect(),
            updated: rows.iter().map(|r| r.updated_at).collect(),
            seq: rows.iter().map(|r| r.journal_seq).collect(),
        }
    }

    fn params(&self) -> Vec<(&(dyn ToSql + Sync), Type)> {
        vec![
            (&self.id, Type::UUID_ARRAY),
            (&self.collection, Type::UUID_ARRAY),
            (&self.start, Type::DATE_ARRAY),
            (&self.end, Type::DATE_ARRAY),
            (&self.status, Type::TEXT_ARRAY),
            (&self.execution, Type::UUID_ARRAY),
            (&self.amc_id, Type::TEXT_ARRAY),
            (&self.started, Type::TIMESTAMPTZ_ARRAY),
            (&self.completed, Type::TIMESTAMPTZ_ARRAY),
            (&self.count, Type::INT4_ARRAY),
            (&self.checksum, Type::TEXT_ARRAY),
            (&self.error, Type::TEXT_ARRAY),
            (&self.created, Type::TIMESTAMPTZ_ARRAY),
            (&self.updated, Type::TIMESTAMPTZ_ARRAY),
            (&self.seq, Type::INT8_ARRAY),
        ]
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

const UPSERT_COLLECTIONS: &str = "
INSERT INTO report_data_collections AS t (id, name, workflow_id, instance_id, start_date,
    end_date, status, weeks_completed, created_at, updated_at, journal_seq)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::date[], $6::date[],
    $7::text[], $8::int4[], $9::timestamptz[], $10::timestamptz[], $11::int8[])
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, workflow_id = EXCLUDED.workflow_id,
    instance_id = EXCLUDED.instance_id, start_date = EXCLUDED.start_date,
    end_date = EXCLUDED.end_date, status = EXCLUDED.status,
    weeks_completed = EXCLUDED.weeks_completed, updated_at = EXCLUDED.updated_at,
    journal_seq = EXCLUDED.journal_seq
WHERE t.journal_seq IS NULL OR t.journal_seq <= EXCLUDED.journal_seq";

const UPSERT_EXECUTIONS: &str = "
INSERT INTO workflow_executions AS t (id, amc_execution_id, workflow_id, instance_id, status,
    execution_parameters, started_at, completed_at, row_count, error_message, triggered_by,
    created_at, updated_at, journal_seq)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[],
    $7::timestamptz[], $8::timestamptz[], $9::int4[], $10::text[], $11::text[],
    $12::timestamptz[], $13::timestamptz[], $14::int8[])
ON CONFLICT (id) DO UPDATE SET amc_execution_id = EXCLUDED.amc_execution_id,
    workflow_id = EXCLUDED.workflow_id, instance_id = EXCLUDED.instance_id,
    status = EXCLUDED.status, execution_parameters = EXCLUDED.execution_parameters,
    started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at,
    row_count = EXCLUDED.row_count, error_message = EXCLUDED.error_message,
    triggered_by = EXCLUDED.triggered_by, updated_at = EXCLUDED.updated_at,
    journal_seq = EXCLUDED.journal_seq
WHERE t.journal_seq IS NULL OR t.journal_seq <= EXCLUDED.journal_seq";

const UPSERT_WEEKS: &str = "
INSERT INTO report_data_weeks AS t (id, collection_id, week_start_date, week_end_date, status,
    execution_id, amc_execution_id, started_at, completed_at, record_count, data_checksum,
    error_message, created_at, updated_at, journal_seq)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::date[], $4::date[], $5::text[], $6::uuid[],
    $7::text[], $8::timestamptz[], $9::timestamptz[], $10::int4[], $11::text[], $12::text[],
    $13::timestamptz[], $14::timestamptz[], $15::int8[])
ON CONFLICT (id) DO UPDATE SET collection_id = EXCLUDED.collection_id,
    week_start_date = EXCLUDED.week_start_date, week_end_date = EXCLUDED.week_end_date,
    status = EXCLUDED.status, execution_id = EXCLUDED.execution_id,
    amc_execution_id = EXCLUDED.amc_execution_id, started_at = EXCLUDED.started_at,
    completed_at = EXCLUDED.completed_at, record_count = EXCLUDED.record_count,
    data_checksum = EXCLUDED.data_checksum, error_message = EXCLUDED.error_message,
    updated_at = EXCLUDED.updated_at, journal_seq = EXCLUDED.journal_seq
WHERE t.journal_seq IS NULL OR t.journal_seq <= EXCLUDED.journal_seq";
