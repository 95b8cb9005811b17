//! The journal's side of `verify`: its tracking rows a page at a time in
//! id order, as Postgres should hold them, so the comparison walks both
//! sides side by side in memory bounded by the page.
//!
//! Owns the paging. The rows are `rows`'; pairing them with Postgres's is
//! `sync::drift`'s.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::sql::uuid_at;
use super::{Entity, Journal, Result, rows};
use crate::warehouse::rows::TrackedRow;

/// The ids of a page: canonical lowercase uuids, whose text order (SQLite's
/// BINARY, Rust's `str` order) is the uuids' byte order, Postgres's
/// `ORDER BY` of a uuid column.
fn page_ids(entity: Entity) -> &'static str {
    match entity {
        Entity::Collection => "SELECT id FROM collections WHERE id > ?1 ORDER BY id LIMIT ?2",
        // Attempts AMC never held have no Postgres row (`rows`).
        Entity::Execution => {
            "SELECT id FROM attempts WHERE id > ?1 AND state NOT IN ('intent', 'abandoned')
             ORDER BY id LIMIT ?2"
        }
        Entity::Week => "SELECT id FROM weeks WHERE id > ?1 ORDER BY id LIMIT ?2",
    }
}

impl Journal {
    /// Up to `limit` of `entity`'s tracking rows whose id comes after
    /// `after` (from the first with `None`), in id order; fewer than
    /// `limit` means the last page. Each page is one read transaction.
    pub fn tracked_after(
        &self,
        entity: Entity,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TrackedRow>> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(|e| self.sqlite(e))?;
        let read = || -> rusqlite::Result<Vec<TrackedRow>> {
            let ids: BTreeSet<String> = {
                let mut statement = tx.prepare_cached(page_ids(entity))?;
                let rows = statement.query_map(
                    rusqlite::params![after.unwrap_or(""), limit as i64],
                    |row| row.get(0),
                )?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut page: Vec<TrackedRow> = match entity {
                Entity::Collection => rows::collection_rows(&tx, &ids)?
                    .iter()
                    .map(|r| r.tracked())
                    .collect(),
                Entity::Execution => rows::execution_rows(&tx, &ids)?
                    .iter()
                    .map(|r| r.tracked())
                    .collect(),
                Entity::Week => rows::week_rows(&tx, &ids)?
                    .iter()
                    .map(|r| r.tracked())
                    .collect(),
            };
            page.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(page)
        };
        read().map_err(|e| self.sqlite(e))
    }

    /// The collections' ids and names: what `verify` reads Postgres for
    /// and names its counts by.
    pub fn collection_names(&self) -> Result<Vec<(Uuid, String)>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare("SELECT id, name FROM collections ORDER BY name")
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([], |row| Ok((uuid_at(row, 0)?, row.get(1)?)))
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sqlite(e))
    }
}
