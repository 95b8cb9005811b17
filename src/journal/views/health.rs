//! What /healthz asks of the journal: whether it takes a durable write,
//! and how the reconciler's last sync went.
//!
//! Owns the probe row and the sync bookkeeping read; judging health is the
//! daemon's.

use chrono::Utc;
use serde::Serialize;

use super::super::sql::timestamp;
use super::super::{Journal, Result};

/// What /healthz reports about the journal and the reconciler.
#[derive(Debug, Clone, Serialize)]
pub struct SyncHealth {
    /// When the reconciler last tried to sync.
    pub last_attempt_at: Option<String>,
    /// When a sync last succeeded: how stale Postgres may be.
    pub last_success_at: Option<String>,
    /// Why the last attempt failed; none when it succeeded.
    pub last_error: Option<String>,
}

impl Journal {
    /// Proves the journal takes a durable write (for /healthz).
    pub fn probe_write(&self) -> Result<()> {
        let connection = self.lock();
        connection
            .execute(
                "INSERT INTO health_probe (id, checked_at) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                [timestamp(Utc::now())],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    pub fn sync_health(&self) -> Result<SyncHealth> {
        let connection = self.lock();
        connection
            .query_row(
                "SELECT last_attempt_at, last_success_at, last_error FROM sync_state WHERE id = 1",
                [],
                |row| {
                    Ok(SyncHealth {
                        last_attempt_at: row.get(0)?,
                        last_success_at: row.get(1)?,
                        last_error: row.get(2)?,
                    })
                },
            )
            .map_err(|e| self.sqlite(e))
    }
}
