//! Requests a command leaves for the running daemon (`rerun`, `backfill`,
//! `cancel` while `run` holds the runner lock): made by the command, taken
//! up and finished by the daemon, each step one hash-chained event
//! (`request.made`, `request.started`, `request.finished`) and a row of the
//! `requests` table the daemon polls and the command waits on.
//!
//! Owns the table and its events; carrying an operation out is
//! `collect::operations`', polling the daemon's.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::events::{
    Event, Operation, RequestFinished, RequestMade, RequestOutcome, RequestStarted,
};
use super::{Journal, Result};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    /// Journaled by the command; no daemon has taken it up yet.
    Made,
    /// A daemon is carrying it out.
    Started,
    Finished,
}

impl RequestState {
    /// The stored `state` word.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Made => "made",
            RequestState::Started => "started",
            RequestState::Finished => "finished",
        }
    }

    fn parse(word: &str) -> Option<RequestState> {
        Some(match word {
            "made" => RequestState::Made,
            "started" => RequestState::Started,
            "finished" => RequestState::Finished,
            _ => return None,
        })
    }
}

/// One request as the table holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub id: i64,
    pub operation: Operation,
    pub made_by: Option<String>,
    pub state: RequestState,
    pub outcome: Option<RequestOutcome>,
    /// What the command prints once it is finished.
    pub message: Option<String>,
    pub made_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

const COLUMNS: &str =
    "id, operation, made_by, state, outcome, message, made_at, started_at, finished_at";

fn request_at(row: &Row<'_>) -> rusqlite::Result<Request> {
    let bad = |index: usize, what: String| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, what.into())
    };
    let operation: String = row.get(1)?;
    let state: String = row.get(3)?;
    let outcome: Option<String> = row.get(4)?;
    Ok(Request {
        id: row.get(0)?,
        operation: serde_json::from_str(&operation).map_err(|e| bad(1, e.to_string()))?,
        made_by: row.get(2)?,
        state: RequestState::parse(&state).ok_or_else(|| bad(3, state.clone()))?,
        outcome: match outcome {
            None => None,
            Some(word) => Some(RequestOutcome::parse(&word).ok_or_else(|| bad(4, word))?),
        },
        message: row.get(5)?,
        made_at: row.get(6)?,
        started_at: row.get(7)?,
        finished_at: row.get(8)?,
    })
}

impl Journal {
    /// Journals a request for the daemon and returns its id.
    pub fn make_request(&self, operation: &Operation, by: Option<&str>) -> Result<i64> {
        let text = serde_json::to_string(operation).map_err(|e| self.invalid(e.to_string()))?;
        self.change(|c| {
            let id: i64 = c.tx.query_row(
                "INSERT INTO requests (kind, operation, made_by, state, made_at)
                 VALUES (?1, ?2, ?3, 'made', ?4) RETURNING id",
                params![operation.kind(), text, by, c.at],
                |row| row.get(0),
            )?;
            c.record(
                &format!("request {id}"),
                &Event::RequestMade(RequestMade {
                    request: id,
                    operation: operation.clone(),
                    by: by.map(str::to_owned),
                }),
            )?;
            Ok(id)
        })
    }

    /// Requests no daemon has taken up yet, oldest first (a partial
    /// index: the poll costs the same however many requests were made).
    pub fn waiting_requests(&self) -> Result<Vec<Request>> {
        self.requests_where(
            "WHERE state != 'finished' AND state = 'made' ORDER BY id",
            [],
        )
    }

    /// Takes a waiting request up; false when another took it first.
    pub fn start_request(&self, id: i64) -> Result<bool> {
        self.change(|c| {
            let taken = c.execute(
                "UPDATE requests SET state = 'started', started_at = ?1
                 WHERE id = ?2 AND state = 'made'",
                params![c.at, id],
            )?;
            if taken == 1 {
                c.record(
                    &format!("request {id}"),
                    &Event::RequestStarted(RequestStarted {
                        request: id,
                        pid: std::process::id(),
                    }),
                )?;
            }
            Ok(taken == 1)
        })
    }

    /// Journals how a request ended, with what the command prints.
    pub fn finish_request(&self, id: i64, outcome: RequestOutcome, message: &str) -> Result<()> {
        self.change(|c| {
            let finished = c.execute(
                "UPDATE requests SET state = 'finished', outcome = ?1, message = ?2,
                     finished_at = ?3
                 WHERE id = ?4 AND state != 'finished'",
                params![outcome.as_str(), message, c.at, id],
            )?;
            if finished == 1 {
                c.record(
                    &format!("request {id}"),
                    &Event::RequestFinished(RequestFinished {
                        request: id,
                        outcome,
                        message: message.to_owned(),
                    }),
                )?;
            }
            Ok(())
        })
    }

    /// Requests a daemon took up and never finished (it was killed):
    /// ended as failed by the next daemon, which says what became of them.
    pub fn interrupted_requests(&self) -> Result<Vec<Request>> {
        self.requests_where(
            "WHERE state != 'finished' AND state = 'started' ORDER BY id",
            [],
        )
    }

    pub fn request(&self, id: i64) -> Result<Option<Request>> {
        Ok(self.requests_where("WHERE id = ?1", [id])?.pop())
    }

    /// The newest `limit` requests (`chronicle requests`).
    pub fn requests(&self, limit: usize) -> Result<Vec<Request>> {
        self.requests_where("ORDER BY id DESC LIMIT ?1", [limit as i64])
    }

    fn requests_where<const N: usize>(&self, tail: &str, args: [i64; N]) -> Result<Vec<Request>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(&format!("SELECT {COLUMNS} FROM requests {tail}"))
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map(rusqlite::params_from_iter(args), request_at)
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sqlite(e))
    }

    /// Whether the request has finished (cheap: by primary key), for a
    /// command waiting on it.
    pub fn request_finished(&self, id: i64) -> Result<bool> {
        let connection = self.lock();
        connection
            .query_row("SELECT state FROM requests WHERE id = ?1", [id], |row| {
                row.get::<_, String>(0)
            })
            .optional()
            .map(|state| state.as_deref() == Some("finished"))
            .map_err(|e| self.sqlite(e))
    }
}
