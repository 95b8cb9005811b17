//! Drains the journal's outbox into Postgres: batch by batch, each batch one
//! transaction, acknowledged in the journal only after Postgres committed.
//! A batch Postgres refuses is split until the refused rows are found; those
//! are quarantined and the rest lands (I4).
//!
//! Owns the sync loop, its backoff and bookkeeping. It never changes
//! tracking state: the journal is the source, Postgres the copy (I3).

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::journal::{Entity, Journal, JournalError, OutboxEntry};
use crate::warehouse::{Target, Warehouse, WarehouseError};

/// Longest wait between sync attempts while Postgres is away.
const BACKOFF_CAP: Duration = Duration::from_secs(300);

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
    /// Rows Postgres refused, now in the journal's quarantine.
    pub quarantined: usize,
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
        match warehouse.apply(&pending.batch).await {
            Ok(()) => {
                journal.acknowledge(&pending.entries)?;
                report.rows += pending.batch.len();
            }
            Err(WarehouseError::Refused(_)) => {
                Box::pin(isolate(journal, warehouse, pending.entries, &mut report)).await?;
            }
            Err(e) => return Err(e.into()),
        }
        report.batches += 1;
    }
    report.pending_after = journal.pending_count()?;
    // Postgres keeps the chain head it was shown: a journal rewritten on
    // the host later no longer matches it (`chronicle audit`).
    if let Some(head) = journal.chain_head()? {
        warehouse
            .record_chain_head(&journal.journal_id()?, head.seq, &head.hash)
            .await?;
    }
    Ok(report)
}

/// Lands `entries` row by row in halves until each refused row stands
/// alone, then quarantines it with Postgres's error.
async fn isolate(
    journal: &Journal,
    warehouse: &mut Warehouse,
    entries: Vec<OutboxEntry>,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    // Several changes of one row travel together: it is refused as a whole.
    let mut rows: BTreeMap<(Entity, String), Vec<OutboxEntry>> = BTreeMap::new();
    for entry in entries {
        rows.entry((entry.entity, entry.entity_id.clone()))
            .or_default()
            .push(entry);
    }
    Box::pin(land_rows(
        journal,
        warehouse,
        rows.into_values().collect(),
        report,
    ))
    .await
}

async fn land_rows(
    journal: &Journal,
    warehouse: &mut Warehouse,
    rows: Vec<Vec<OutboxEntry>>,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let entries: Vec<OutboxEntry> = rows.iter().flatten().cloned().collect();
    let batch = journal.batch_for(&entries)?;
    match warehouse.apply(&batch).await {
        Ok(()) => {
            journal.acknowledge(&entries)?;
            report.rows += batch.len();
            Ok(())
        }
        Err(WarehouseError::Refused(why)) if rows.len() == 1 => {
            tracing::warn!(entity = %entries[0].entity, id = %entries[0].entity_id, error = %why, "Postgres refused a row; quarantined");
            journal.quarantine(&entries, &why)?;
            report.quarantined += 1;
            Ok(())
        }
        Err(WarehouseError::Refused(_)) => {
            let mut left = rows;
            let right = left.split_off(left.len() / 2);
            Box::pin(land_rows(journal, warehouse, left, report)).await?;
            Box::pin(land_rows(journal, warehouse, right, report)).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Connects, drains once and records the outcome in the journal.
pub async fn sync_once(
    journal: &Journal,
    target: &Target,
    batch_size: usize,
) -> Result<SyncReport, SyncError> {
    let result = async {
        let mut warehouse = Warehouse::open(target).await?;
        drain(journal, &mut warehouse, batch_size).await
    }
    .await;
    let error = result.as_ref().err().map(|e| e.to_string());
    journal.record_sync(error.as_deref())?;
    result
}

/// The daemon's loop: drain every `interval` until `shutdown` resolves,
/// keeping one connection. While Postgres is away it retries with
/// exponential backoff and jitter up to five minutes, and never gives up.
pub async fn run(
    journal: Journal,
    target: Target,
    interval: Duration,
    batch_size: usize,
    shutdown: impl Future<Output = ()>,
) {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(BACKOFF_CAP)
        .without_max_times()
        .with_jitter();
    let mut delays = backoff.build();
    let mut warehouse: Option<Warehouse> = None;
    let mut wait = Duration::ZERO;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if warehouse.as_ref().is_some_and(Warehouse::is_closed) {
            warehouse = None;
        }
        let result = async {
            if warehouse.is_none() {
                warehouse = Some(Warehouse::open(&target).await?);
            }
            let open = warehouse.as_mut().expect("connected just above");
            drain(&journal, open, batch_size).await
        }
        .await;
        match &result {
            Ok(report) => {
                if report.rows > 0 || report.quarantined > 0 {
                    tracing::info!(
                        rows = report.rows,
                        quarantined = report.quarantined,
                        "synced to Postgres"
                    );
                }
                delays = backoff.build();
                wait = interval;
            }
            Err(e) => {
                wait = delays.next().unwrap_or(BACKOFF_CAP);
                tracing::warn!(error = %e, retry_in = ?wait, "sync failed; the journal keeps every change until Postgres is back");
                warehouse = None;
            }
        }
        let error = result.as_ref().err().map(|e| e.to_string());
        if let Err(e) = journal.record_sync(error.as_deref()) {
            tracing::error!(error = %e, "cannot record the sync outcome in the journal");
        }
    }
}
