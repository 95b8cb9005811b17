//! Drains the journal's outbox into Postgres: batch by batch, each batch one
//! transaction, acknowledged in the journal only after Postgres committed,
//! with the next batch read and sent while the current one is applied.
//! A batch Postgres refuses is split until the refused rows are found; those
//! are quarantined and the rest lands (I4).
//!
//! Owns the sync loop, its backoff and bookkeeping. It never changes
//! tracking state: the journal is the source, Postgres the copy (I3).

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::FutureExt;

use crate::journal::{Entity, Journal, JournalError, OutboxEntry, Pending};
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

/// Batches on the wire at once: the next batch is sent before the answers
/// to the current one are back, so Postgres a region away costs one round
/// trip per drain rather than one per batch.
const IN_FLIGHT: usize = 2;

/// Drains everything pending now through an open connection, pipelined:
/// while Postgres applies a batch, the next one is read from the journal
/// (and the last committed one acknowledged) on a blocking thread, and sent
/// behind it. Each batch is still one transaction, acknowledged only after
/// its COMMIT returned; a batch that lands after a later one cannot regress
/// a row (the journal_seq guard, I3).
pub async fn drain(
    journal: &Journal,
    warehouse: &mut Warehouse,
    batch_size: usize,
) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport::default();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    // Committed in Postgres, acknowledged with the next read.
    let mut committed: Vec<OutboxEntry> = Vec::new();
    // The outbox position the next read starts after.
    let mut read_after = 0;
    loop {
        if in_flight.len() < IN_FLIGHT {
            let next = read_ahead(
                journal,
                std::mem::take(&mut committed),
                read_after,
                batch_size,
            )
            .await?;
            if let Some(last) = next.last_entry() {
                read_after = last;
                let send = warehouse.prepare(&next.batch).await?.send();
                in_flight.push_back(InFlight::start(next, Box::pin(send)));
                continue;
            }
        }
        let Some(oldest) = in_flight.pop_front() else {
            break;
        };
        let (pending, answer) = oldest.finish().await;
        match answer {
            Ok(()) => {
                report.rows += pending.batch.len();
                report.batches += 1;
                committed = pending.entries;
            }
            Err(WarehouseError::Refused(_)) => {
                // Isolating needs the session to itself: let the batches
                // behind this one end first. One refused too is left in the
                // outbox: it may hold the very row isolated here, which the
                // quarantine takes out of the queue.
                for behind in std::mem::take(&mut in_flight) {
                    let (landed, answer) = behind.finish().await;
                    match answer {
                        Ok(()) => {
                            report.rows += landed.batch.len();
                            report.batches += 1;
                            committed.extend(landed.entries);
                        }
                        Err(WarehouseError::Refused(_)) => {}
                        Err(e) => return Err(acknowledged_then(journal, &committed, e)),
                    }
                }
                journal.acknowledge(&std::mem::take(&mut committed))?;
                Box::pin(isolate(journal, warehouse, pending.entries, &mut report)).await?;
                report.batches += 1;
                // Read on from the outbox's head: what was left or
                // quarantined since the read-ahead.
                read_after = 0;
            }
            Err(e) => return Err(acknowledged_then(journal, &committed, e)),
        }
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

/// A batch sent and not yet answered.
struct InFlight {
    pending: Pending,
    answer: Pin<Box<dyn Future<Output = Result<(), WarehouseError>> + Send>>,
    /// The answer, if it came at the first poll (an error before sending).
    early: Option<Result<(), WarehouseError>>,
}

impl InFlight {
    /// Polls the batch once, which queues all its statements on the
    /// connection in order, ahead of any batch started after it.
    fn start(
        pending: Pending,
        mut answer: Pin<Box<dyn Future<Output = Result<(), WarehouseError>> + Send>>,
    ) -> InFlight {
        let early = (&mut answer).now_or_never();
        InFlight {
            pending,
            answer,
            early,
        }
    }

    async fn finish(self) -> (Pending, Result<(), WarehouseError>) {
        let answer = match self.early {
            Some(answer) => answer,
            None => self.answer.await,
        };
        (self.pending, answer)
    }
}

/// Acknowledges `committed` and reads the batch after outbox entry `after`,
/// on a blocking thread, so the batches in flight travel meanwhile.
async fn read_ahead(
    journal: &Journal,
    committed: Vec<OutboxEntry>,
    after: i64,
    limit: usize,
) -> Result<Pending, SyncError> {
    let journal = journal.clone();
    let read = tokio::task::spawn_blocking(move || {
        journal.acknowledge(&committed)?;
        journal.pending_after(after, limit)
    });
    match read.await {
        Ok(pending) => Ok(pending?),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Ends a drain on `error`, acknowledging first what Postgres committed
/// (else it would only be sent again, harmlessly).
fn acknowledged_then(
    journal: &Journal,
    committed: &[OutboxEntry],
    error: WarehouseError,
) -> SyncError {
    match journal.acknowledge(committed) {
        Ok(()) => error.into(),
        Err(e) => e.into(),
    }
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
