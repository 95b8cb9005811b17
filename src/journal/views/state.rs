//! The event log and the state tables as the audit's replay walks them:
//! collection by collection, so the audit holds one collection's replayed
//! state at a time, whatever the length of the history.
//!
//! A group is a collection with every week and attempt that belongs to it.
//! Events are grouped by what the log itself says (a week by its
//! `week.added`/`week.imported` collection, an attempt by its
//! `attempt.intent` week), never by the state tables, which are what is
//! being checked; events the log cannot place (no creating event) form the
//! group with no collection, walked first. State rows are grouped by their
//! own columns (a week by `collection_id`, an attempt by its week's);
//! attempts whose week the table lacks come with the group with no
//! collection. A row the two disagree on appears in two groups, and the
//! audit pairs it up afterwards.
//!
//! The walk reads the log once, in `seq` order, without a sort: the hash
//! chain is checked, each event's group is decided (each created row's
//! group kept under its id, `owners`) and the event's replayed columns are
//! appended to its group in a temporary file (`spill`); the groups are then
//! read back one at a time. An event placed before the event that creates
//! its row lands in the group with no collection, where its replay names
//! it, as it would in any group.
//!
//! Owns the queries and the walk's order; the replay and comparison are the
//! audit's. Everything is read in one read transaction: one snapshot.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, params};
use serde::Deserialize;
use serde_json::Value;

use super::super::attempts::result_digest;
use super::super::chain::{ChainBreak, ChainWalk, linked};
use super::super::sql::sqlite_text;
use super::super::{Journal, JournalError, Result};
use super::owners::Owners;
use super::spill::{Spill, Spilled};

/// One state-table row reduced to the columns the event log determines,
/// keyed by column name, as the audit's replay rebuilds them. Names are
/// static: a heap string per column name would cost about as much as the
/// values.
pub type StateRow = BTreeMap<&'static str, Value>;

/// State rows: `(entity, id)` to the row's replayable columns.
pub type StateTables = BTreeMap<(String, String), StateRow>;

/// One step of the audit's walk.
#[derive(Debug)]
pub enum AuditPart<'a> {
    /// The hash chain, checked before any group: its first break, if any.
    Chain(Option<ChainBreak>),
    /// An event of the group, in `seq` order.
    Event {
        seq: i64,
        kind: &'a str,
        subject: &'a str,
        payload: &'a str,
    },
    /// A state-table row of the group (after all its events).
    Row {
        entity: &'static str,
        id: String,
        row: StateRow,
    },
    /// The group is complete.
    End,
}

const COLLECTION_COLUMNS: &[&str] = &[
    "name",
    "workflow_id",
    "instance_id",
    "start_date",
    "schedule_hash",
    "journal_seq",
    "schedule_file",
];
const WEEK_COLUMNS: &[&str] = &[
    "collection_id",
    "week_start",
    "status",
    "attempt_id",
    "attempts",
    "record_count",
    "data_checksum",
    "journal_seq",
    "error_message",
];
const EXECUTION_COLUMNS: &[&str] = &[
    "week_id",
    "state",
    "amc_execution_id",
    "amc_status",
    "row_count",
    "data_checksum",
    "journal_seq",
    "error_message",
    "triggered_by",
    "superseded",
];
const EXECUTION_SELECT: &str = "SELECT a.id, a.week_id, a.state, a.amc_execution_id, a.amc_status,
    a.row_count, a.data_checksum, a.journal_seq, a.error_message, a.triggered_by,
    a.superseded_at IS NOT NULL, r.columns, r.sample_rows, r.summary_stats
 FROM attempts a LEFT JOIN attempt_results r ON r.attempt_id = a.id";

/// One group of the walk: its collection and its index in the spill.
struct EventGroup {
    collection: Option<String>,
    index: usize,
}

/// What the walk can fail on: the journal, or its temporary file.
#[derive(Debug, thiserror::Error)]
enum WalkError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Spill(#[from] std::io::Error),
}

/// The fields of a creating event's payload that place rows in a group
/// (`week.added`, `week.imported`, `attempt.intent`); borrowed unless the
/// JSON escapes them.
#[derive(Deserialize)]
struct Placing<'a> {
    #[serde(borrow)]
    collection_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    week_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    execution: Option<PlacedExecution<'a>>,
}

#[derive(Deserialize)]
struct PlacedExecution<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
}

impl Journal {
    /// Walks the log and the state tables collection by collection (see
    /// the module's note): first the hash chain's verdict
    /// ([`AuditPart::Chain`]), then for each group its events in `seq`
    /// order, its state rows and [`AuditPart::End`]. The group with no
    /// collection comes first.
    pub fn each_collection_group(&self, mut each: impl FnMut(AuditPart<'_>)) -> Result<()> {
        let connection = self.lock();
        walk(&connection, &mut each).map_err(|e| match e {
            WalkError::Sqlite(e) => self.sqlite(e),
            WalkError::Spill(source) => JournalError::AuditSpill {
                path: self.path().to_path_buf(),
                source,
            },
        })
    }
}

fn walk(
    connection: &Connection,
    each: &mut impl FnMut(AuditPart<'_>),
) -> std::result::Result<(), WalkError> {
    // One snapshot for the events and the tables.
    let tx = connection.unchecked_transaction()?;
    let mut state_groups: Vec<String> = {
        let mut statement = tx.prepare(
            "SELECT id FROM collections UNION SELECT DISTINCT collection_id FROM weeks ORDER BY 1",
        )?;
        statement
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    state_groups.reverse();
    let mut spill = Spill::new()?;
    let (chain, mut groups) = group_events(&tx, &mut spill)?;
    each(AuditPart::Chain(chain));
    // The group with no collection first (None sorts first), then the
    // collections in order of id, from either side.
    groups.sort_unstable_by(|a, b| a.collection.cmp(&b.collection));
    let mut groups = groups.into_iter().peekable();
    let mut group: Option<String> = None;
    loop {
        if let Some(events) = groups.next_if(|g| g.collection == group) {
            spill.each(events.index, |event| {
                each(AuditPart::Event {
                    seq: event.seq,
                    kind: event.kind,
                    subject: event.subject,
                    payload: event.payload,
                });
                Ok(())
            })?;
        }
        state_rows(&tx, group.as_deref(), each)?;
        each(AuditPart::End);
        while state_groups
            .last()
            .is_some_and(|g| Some(g) <= group.as_ref())
        {
            state_groups.pop();
        }
        group = match (groups.peek().map(|g| &g.collection), state_groups.last()) {
            (None, None) => break,
            (Some(event), None) => event.clone(),
            (None, Some(state)) => Some(state.clone()),
            (Some(event), Some(state)) => event.clone().min(Some(state.clone())),
        };
    }
    Ok(tx.finish()?)
}

/// The first pass, in `seq` order: checks the chain and places every event
/// in a group. A collection's events are its group (by subject); a week is
/// placed by its creating event's `collection_id` (and an imported week's
/// execution with it), an attempt by its intent's week; every other event
/// goes where its subject was placed, or to the group with no collection.
/// A payload that does not parse places nothing: the replay names it.
fn group_events(
    tx: &Connection,
    spill: &mut Spill,
) -> std::result::Result<(Option<ChainBreak>, Vec<EventGroup>), WalkError> {
    let mut chain = ChainWalk::default();
    let mut owners = Owners::default();
    let mut groups = vec![EventGroup {
        collection: None,
        index: 0,
    }];
    let mut indexes: HashMap<String, u32> = HashMap::new();
    let mut index_of = |collection: &str, groups: &mut Vec<EventGroup>| -> u32 {
        if let Some(index) = indexes.get(collection) {
            return *index;
        }
        let index = groups.len() as u32;
        groups.push(EventGroup {
            collection: Some(collection.to_owned()),
            index: index as usize,
        });
        indexes.insert(collection.to_owned(), index);
        index
    };
    let mut statement = tx.prepare(
        "SELECT seq, at, kind, subject, payload, prev_hash, hash FROM events ORDER BY seq",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let event = linked(row)?;
        chain.step(&event);
        let (kind, subject) = (event.kind, event.subject);
        let group = if kind.starts_with("collection.") {
            Some(index_of(subject, &mut groups))
        } else {
            if matches!(kind, "week.added" | "week.imported" | "attempt.intent")
                && let Ok(placing) = serde_json::from_str::<Placing<'_>>(event.payload)
            {
                if kind == "attempt.intent" {
                    if let Some(week) = placing.week_id.and_then(|w| owners.group_of(&w)) {
                        owners.place(subject, week);
                    }
                } else if let Some(collection) = placing.collection_id {
                    let index = index_of(&collection, &mut groups);
                    owners.place(subject, index);
                    if let Some(execution) = placing.execution.and_then(|e| e.id) {
                        owners.place(&execution, index);
                    }
                }
            }
            owners.group_of(subject)
        };
        spill.push(
            group.unwrap_or(0) as usize,
            &Spilled {
                seq: event.seq,
                kind,
                subject,
                payload: event.payload,
            },
        )?;
    }
    spill.finish()?;
    Ok((chain.finish(), groups))
}

/// The state rows of one group: the collection, its weeks and their
/// attempts; for no collection, the attempts whose week the table lacks.
fn state_rows(
    tx: &Connection,
    group: Option<&str>,
    each: &mut impl FnMut(AuditPart<'_>),
) -> rusqlite::Result<()> {
    let Some(collection) = group else {
        let orphans = format!(
            "{EXECUTION_SELECT} WHERE NOT EXISTS (SELECT 1 FROM weeks w WHERE w.id = a.week_id)"
        );
        return rows_of(tx, "execution", &orphans, EXECUTION_COLUMNS, None, each);
    };
    rows_of(
        tx,
        "collection",
        "SELECT id, name, workflow_id, instance_id, start_date, schedule_hash, journal_seq,
            schedule_file
         FROM collections WHERE id = ?1",
        COLLECTION_COLUMNS,
        Some(collection),
        each,
    )?;
    rows_of(
        tx,
        "week",
        "SELECT id, collection_id, week_start, status, attempt_id, attempts,
            record_count, data_checksum, journal_seq, error_message
         FROM weeks WHERE collection_id = ?1",
        WEEK_COLUMNS,
        Some(collection),
        each,
    )?;
    let executions = format!(
        "{EXECUTION_SELECT} WHERE a.week_id IN (SELECT id FROM weeks WHERE collection_id = ?1)"
    );
    rows_of(
        tx,
        "execution",
        &executions,
        EXECUTION_COLUMNS,
        Some(collection),
        each,
    )
}

fn rows_of(
    tx: &Connection,
    entity: &'static str,
    sql: &str,
    columns: &[&'static str],
    collection: Option<&str>,
    each: &mut impl FnMut(AuditPart<'_>),
) -> rusqlite::Result<()> {
    let mut statement = tx.prepare_cached(sql)?;
    let mut rows = match collection {
        Some(collection) => statement.query(params![collection])?,
        None => statement.query([])?,
    };
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let mut state = StateRow::new();
        for (i, column) in columns.iter().enumerate() {
            state.insert(column, sqlite_text(row, i + 1)?);
        }
        if entity == "execution" {
            state.insert("result_digest", stored_digest(row, columns.len() + 1)?);
        }
        each(AuditPart::Row {
            entity,
            id,
            row: state,
        });
    }
    Ok(())
}

/// The digest of an attempt's stored result (columns, rows, stats at
/// `first`..), or null when it has none.
fn stored_digest(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Value> {
    let columns: Option<String> = row.get(first)?;
    let rows: Option<String> = row.get(first + 1)?;
    let stats: Option<String> = row.get(first + 2)?;
    Ok(match (columns, stats) {
        (Some(columns), Some(stats)) => {
            Value::String(result_digest(&columns, rows.as_deref(), &stats))
        }
        _ => Value::Null,
    })
}
