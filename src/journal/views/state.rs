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
//! Owns the queries and the walk's order; the replay and comparison are the
//! audit's. Everything is read in one read transaction: one snapshot.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};
use serde_json::Value;

use super::super::attempts::result_digest;
use super::super::sql::sqlite_text;
use super::super::{Journal, Result};

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

/// Every event with the collection the log places it in (`grp`, NULL when
/// it cannot), ordered by that collection then `seq`. `owner` is each row
/// the log creates (a week, an imported execution, an attempt) with the
/// collection it belongs to; events of other kinds land wherever their
/// subject does, which changes nothing (they touch no replayed row).
/// SQLite sorts on disk (`temp_store = FILE` during the walk), so memory
/// does not grow with the log.
const GROUPED_EVENTS: &str = "
WITH week_of(id, collection, execution) AS MATERIALIZED (
    SELECT subject, json_extract(payload, '$.collection_id'),
           CASE kind WHEN 'week.imported' THEN json_extract(payload, '$.execution.id') END
      FROM events WHERE kind IN ('week.added', 'week.imported')
),
owner(id, collection) AS MATERIALIZED (
    SELECT id, collection FROM week_of
    UNION ALL
    SELECT execution, collection FROM week_of WHERE execution IS NOT NULL
    UNION ALL
    SELECT subject,
           (SELECT collection FROM week_of WHERE id = json_extract(payload, '$.week_id'))
      FROM events WHERE kind = 'attempt.intent'
)
SELECT CAST(CASE
           WHEN kind GLOB 'collection.*' THEN subject
           ELSE (SELECT collection FROM owner WHERE id = subject)
       END AS TEXT) AS grp,
       seq, kind, subject, payload
  FROM events
 ORDER BY grp, seq";

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

/// An event read off the grouped walk, owned so the next one can be read.
struct Grouped {
    group: Option<String>,
    seq: i64,
    kind: String,
    subject: String,
    payload: String,
}

impl Journal {
    /// Walks the log and the state tables collection by collection (see
    /// the module's note): for each group its events in `seq` order, then
    /// its state rows, then [`AuditPart::End`]. The group with no
    /// collection comes first.
    pub fn each_collection_group(&self, mut each: impl FnMut(AuditPart<'_>)) -> Result<()> {
        let connection = self.lock();
        // The sort and the materialized `owner` go to temporary files, not
        // the heap (the bundled SQLite keeps temporaries in memory by
        // default); a 16 MB cache (fixed, not growing with the log) makes
        // the sort's runs longer and its merge shorter. Connection
        // settings, not writes to the journal; SQLite's defaults after.
        connection
            .execute_batch("PRAGMA temp_store = FILE; PRAGMA cache_size = -16000")
            .map_err(|e| self.sqlite(e))?;
        let walked = walk(&connection, &mut each);
        let restored =
            connection.execute_batch("PRAGMA temp_store = DEFAULT; PRAGMA cache_size = -2000");
        walked.and(restored).map_err(|e| self.sqlite(e))
    }
}

fn walk(connection: &Connection, each: &mut impl FnMut(AuditPart<'_>)) -> rusqlite::Result<()> {
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
    let mut statement = tx.prepare(GROUPED_EVENTS)?;
    let mut rows = statement.query([])?;
    let mut next_event = || -> rusqlite::Result<Option<Grouped>> {
        rows.next()?
            .map(|row| {
                Ok(Grouped {
                    group: row.get(0)?,
                    seq: row.get(1)?,
                    kind: row.get(2)?,
                    subject: row.get(3)?,
                    payload: row.get(4)?,
                })
            })
            .transpose()
    };
    let mut pending = next_event()?;
    // The group with no collection first, then the collections in order
    // of id, from either side.
    let mut group: Option<String> = None;
    loop {
        while let Some(event) = pending.take_if(|e| e.group == group) {
            each(AuditPart::Event {
                seq: event.seq,
                kind: &event.kind,
                subject: &event.subject,
                payload: &event.payload,
            });
            pending = next_event()?;
        }
        state_rows(&tx, group.as_deref(), each)?;
        each(AuditPart::End);
        while state_groups
            .last()
            .is_some_and(|g| Some(g) <= group.as_ref())
        {
            state_groups.pop();
        }
        group = match (
            pending.as_ref().map(|e| e.group.clone()),
            state_groups.last(),
        ) {
            (None, None) => break,
            (Some(event), None) => event,
            (None, Some(state)) => Some(state.clone()),
            (Some(event), Some(state)) => event.min(Some(state.clone())),
        };
    }
    drop(rows);
    drop(statement);
    tx.finish()
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
