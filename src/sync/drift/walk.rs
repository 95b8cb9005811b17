//! One table's walk: the journal's rows and Postgres's, both in id order,
//! paired like a merge join, each side refilled a page at a time. A row on
//! one side only is missing on the other; a pair is compared column by
//! column.
//!
//! Owns the pairing and the findings it makes. What a finding means is
//! the parent module's; the pages are the journal's and the warehouse's.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, VecDeque};

use uuid::Uuid;

use super::{DriftError, Finding, Problem};
use crate::journal::{Entity, Journal};
use crate::warehouse::Scan;
use crate::warehouse::rows::{NULL, TrackedRow};

/// One side's rows: the current page, and whether the side is exhausted.
#[derive(Default)]
struct Side {
    rows: VecDeque<TrackedRow>,
    /// The last id read: where the next journal page starts.
    last: Option<String>,
    done: bool,
}

impl Side {
    fn wants_more(&self) -> bool {
        self.rows.is_empty() && !self.done
    }

    /// An empty page ends the side: a short page could just be rows the
    /// read left out. Ids must rise strictly, within and across pages: a
    /// side out of order would pair the wrong rows (or, read again from
    /// the same place, never end), so it is an error naming where.
    fn fill(&mut self, page: Vec<TrackedRow>, side: &str) -> Result<(), DriftError> {
        let mut last = self.last.as_deref();
        for row in &page {
            if last.is_some_and(|l| l >= row.id.as_str()) {
                return Err(DriftError::OutOfOrder(format!(
                    "{side} {} {} came after {}",
                    row.entity,
                    row.id,
                    last.unwrap_or_default()
                )));
            }
            last = Some(row.id.as_str());
        }
        match page.last() {
            None => self.done = true,
            Some(row) => self.last = Some(row.id.clone()),
        }
        self.rows.extend(page);
        Ok(())
    }
}

pub(super) struct Walk<'a> {
    journal: &'a Journal,
    scan: &'a Scan<'a>,
    unsynced: &'a BTreeSet<(Entity, String)>,
    page: usize,
    pub findings: Vec<Finding>,
    /// Journal rows not compared because they wait in the outbox or the
    /// quarantine.
    pub skipped: usize,
    /// Postgres rows that are this journal's: the rest are other tools'.
    pub ours_in_postgres: usize,
    /// Journal executions no week of its collections names in Postgres:
    /// looked up by id a page at a time, since Postgres may still hold them
    /// (an attempt a later one replaced).
    unlinked: Vec<TrackedRow>,
}

impl<'a> Walk<'a> {
    pub fn new(
        journal: &'a Journal,
        scan: &'a Scan<'a>,
        unsynced: &'a BTreeSet<(Entity, String)>,
        page: usize,
    ) -> Walk<'a> {
        Walk {
            journal,
            scan,
            unsynced,
            page: page.max(1),
            findings: Vec::new(),
            skipped: 0,
            ours_in_postgres: 0,
            unlinked: Vec::new(),
        }
    }

    pub async fn table(&mut self, entity: Entity) -> Result<(), DriftError> {
        let mut ours = Side::default();
        let mut theirs = Side::default();
        loop {
            if ours.wants_more() {
                let after = ours.last.as_deref();
                let page = self.journal.tracked_after(entity, after, self.page)?;
                ours.fill(page, "the journal's")?;
            }
            if theirs.wants_more() {
                theirs.fill(self.scan.next_page(entity).await?, "Postgres's")?;
            }
            let order = match (ours.rows.front(), theirs.rows.front()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => a.id.cmp(&b.id),
            };
            match order {
                Ordering::Less => {
                    let row = ours.rows.pop_front().expect("front seen");
                    self.journal_only(row).await?;
                }
                Ordering::Greater => {
                    let row = theirs.rows.pop_front().expect("front seen");
                    self.ours_in_postgres += 1;
                    self.found(row, Problem::MissingInJournal, String::new());
                }
                Ordering::Equal => {
                    let row = ours.rows.pop_front().expect("front seen");
                    let held = theirs.rows.pop_front().expect("front seen");
                    self.ours_in_postgres += 1;
                    self.pair(row, &held);
                }
            }
        }
        self.look_up_unlinked().await
    }

    fn is_unsynced(&self, row: &TrackedRow) -> bool {
        self.unsynced.contains(&(row.entity, row.id.clone()))
    }

    fn found(&mut self, row: TrackedRow, problem: Problem, detail: String) {
        self.findings.push(Finding {
            entity: row.entity,
            id: row.id,
            problem,
            detail,
        });
    }

    async fn journal_only(&mut self, row: TrackedRow) -> Result<(), DriftError> {
        if row.entity == Entity::Execution {
            self.unlinked.push(row);
            if self.unlinked.len() >= self.page {
                self.look_up_unlinked().await?;
            }
        } else if self.is_unsynced(&row) {
            self.skipped += 1;
        } else {
            self.found(row, Problem::MissingInPostgres, String::new());
        }
        Ok(())
    }

    async fn look_up_unlinked(&mut self) -> Result<(), DriftError> {
        if self.unlinked.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.unlinked);
        let ids: Vec<Uuid> = rows
            .iter()
            .filter_map(|r| Uuid::parse_str(&r.id).ok())
            .collect();
        let mut held: HashMap<String, TrackedRow> = self
            .scan
            .executions(&ids)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        for row in rows {
            match held.remove(&row.id) {
                Some(pg) => {
                    self.ours_in_postgres += 1;
                    self.pair(row, &pg);
                }
                None if self.is_unsynced(&row) => self.skipped += 1,
                None => self.found(row, Problem::MissingInPostgres, String::new()),
            }
        }
        Ok(())
    }

    /// Both sides hold the row: compares its tracked columns.
    fn pair(&mut self, row: TrackedRow, pg: &TrackedRow) {
        if self.is_unsynced(&row) {
            self.skipped += 1;
            return;
        }
        let differing: Vec<String> = row
            .columns
            .iter()
            .filter_map(|(column, value)| {
                let held = pg.get(column).unwrap_or(NULL);
                let differs = held != value && !(*column == "journal_seq" && held == NULL);
                differs.then(|| format!("{column}: journal {value} / postgres {held}"))
            })
            .collect();
        if !differing.is_empty() {
            self.found(row, Problem::Differs, differing.join("; "));
        }
    }
}
