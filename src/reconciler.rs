//! Drains the journal's outbox into Postgres: batch by batch, each batch one
//! transaction, acknowledged in the journal only after Postgres committed.
//!
//! Owns the sync loop and its bookkeeping. It never changes tracking state:
//! the journal is the source, Postgres the copy (I3, I4).

use std::time::Duration;

use crate::journal::{Journal, JournalError};
use crate::postgres_tls::TlsOptions;
use crate::warehouse::{Warehouse, WarehouseError};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What one drain did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// Tracking rows written (parents sent along count too).
    pub rows: usize,
    pub batches: usize,
    /// Outbox entries left: changes made while the drain ran.
    pub pending_after: i64,
}

/// Drains everything pending now through an open connection.
pub async fn drain(
    journal: &Journal,
    warehouse: &mut Warehouse,
    batch_size: usize,
) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport::default();
    loop {
        let pending = journal.pending(batch_size)?;
        if pending.is_empty() {
            break;
        }
        warehouse.apply(&pending.batch).await?;
        journal.acknowledge(&pending)?;
        report.rows += pending.batch.len();
        report.batches += 1;
    }
    report.pending_after = journal.pending_count()?;
    Ok(report)
}

/// Connects, drains once and records the outcome in the journal.
pub async fn sync_once(
    journal: &Journal,
    url: &str,
    tls: &TlsOptions,
    batch_size: usize,
) -> Result<SyncReport, SyncError> {
    let result = async {
        let mut warehouse = Warehouse::connect(url, tls).await?;
        drain(journal, &mut warehouse, batch_size).await
    }
    .await;
    let error = result.as_ref().err().map(|e| e.to_string());
    journal.record_sync(error.as_deref())?;
    result
}

/// The daemon's loop: drain every `interval` until `shutdown` resolves,
/// keeping one connection and opening a new one after any failure.
pub async fn run(
    journal: Journal,
    url: String,
    tls: TlsOptions,
    interval: Duration,
    batch_size: usize,
    shutdown: impl Future<Output = ()>,
) {
    let mut warehouse: Option<Warehouse> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        if warehouse.as_ref().is_some_and(Warehouse::is_closed) {
            warehouse = None;
        }
        let result = async {
            if warehouse.is_none() {
                warehouse = Some(Warehouse::connect(&url, &tls).await?);
            }
            let open = warehouse.as_mut().expect("connected just above");
            drain(&journal, open, batch_size).await
        }
        .await;
        match &result {
            Ok(report) if report.rows > 0 => {
                tracing::info!(
                    rows = report.rows,
                    batches = report.batches,
                    "synced to Postgres"
                )
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "sync failed; the journal keeps every change until Postgres is back");
                warehouse = None;
            }
        }
        if let Err(e) = journal.record_sync(result.as_ref().err().map(|e| e.to_string()).as_deref())
        {
            tracing::error!(error = %e, "cannot record the sync outcome in the journal");
        }
    }
}
