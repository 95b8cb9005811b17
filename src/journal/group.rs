//! Group commit: the journal's one connection, and how concurrent writers
//! share one transaction and one fsync (BENCHMARKS.md, journal) while each
//! is answered only after the COMMIT that holds its change returned (I1).
//!
//! Owns who uses the connection when. A writer finding no transaction open
//! begins one and applies its change; a writer arriving while one is open
//! (its predecessors are waiting for writers already on their way) applies
//! its change in the same transaction under a savepoint, so a failing one
//! undoes only itself. The writer that finds nobody else on the way commits
//! for all of them. No thread of its own: the writers take turns on the
//! mutex. Everything else (reads, other transactions: `Journal::lock`)
//! waits until no group is open. What a change writes is `change`'s.

use std::any::Any;
use std::ops::{Deref, DerefMut};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use rusqlite::Connection;

/// The connection and the group commit around it; one per journal handle.
pub(super) struct Writer {
    state: Mutex<State>,
    /// Woken when a group commits or is given up.
    settled: Condvar,
    /// Writers between calling `write` and holding the mutex: while any
    /// are on their way, the group stays open for them.
    arriving: AtomicUsize,
    /// Changes committed and COMMITs that did it, for `commit_counts`.
    changes: AtomicU64,
    commits: AtomicU64,
}

struct State {
    connection: Connection,
    /// The group whose transaction is open, if one is.
    group: Option<Arc<Group>>,
    /// Threads waiting on `settled`: nobody is woken when none wait.
    waiting: usize,
}

/// One transaction shared by several writers.
#[derive(Default)]
struct Group {
    /// Set once, when the group committed (`Ok`) or was lost (why).
    outcome: OnceLock<std::result::Result<(), String>>,
    /// Changes applied in it so far.
    changes: AtomicU64,
}

/// Why a write did not commit.
#[derive(Debug)]
pub(super) enum WriteError {
    /// The change itself, or the COMMIT this writer ran, failed.
    Sqlite(rusqlite::Error),
    /// The change was applied, but the COMMIT of its group, run by another
    /// writer, failed or the group's transaction was lost: nothing of it
    /// is recorded.
    NotCommitted(String),
}

/// What a change's closure ended with.
enum Applied<T> {
    Done(T),
    Failed(rusqlite::Error),
    Panicked(Box<dyn Any + Send>),
}

/// Exclusive use of the connection, with no group open: for reads and for
/// transactions of their own.
pub(super) struct Exclusive<'w>(MutexGuard<'w, State>);

impl Deref for Exclusive<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0.connection
    }
}

impl DerefMut for Exclusive<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.0.connection
    }
}

impl Writer {
    pub(super) fn new(connection: Connection) -> Writer {
        Writer {
            state: Mutex::new(State {
                connection,
                group: None,
                waiting: 0,
            }),
            settled: Condvar::new(),
            arriving: AtomicUsize::new(0),
            changes: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        }
    }

    /// `(changes, commits)` committed through `write` so far.
    pub(super) fn counts(&self) -> (u64, u64) {
        (
            self.changes.load(Ordering::Relaxed),
            self.commits.load(Ordering::Relaxed),
        )
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the mutex cannot leave a half change: a
        // change's own panic is caught and undone before it goes on, and
        // nothing else here panics with a transaction open.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits on `settled` until `done` holds.
    fn wait<'w>(
        &self,
        mut state: MutexGuard<'w, State>,
        done: impl Fn(&State) -> bool,
    ) -> MutexGuard<'w, State> {
        while !done(&state) {
            state.waiting += 1;
            state = self
                .settled
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.waiting -= 1;
        }
        state
    }

    /// The connection alone, once no group is open.
    pub(super) fn exclusive(&self) -> Exclusive<'_> {
        let state = self.state();
        Exclusive(self.wait(state, |s| s.group.is_none()))
    }

    /// Applies `apply` in an IMMEDIATE transaction, alone or with the
    /// changes of writers arriving meanwhile, and returns once that
    /// transaction is committed (with WAL and `synchronous=FULL`, fsynced).
    pub(super) fn write<T>(
        &self,
        apply: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> std::result::Result<T, WriteError> {
        self.arriving.fetch_add(1, Ordering::SeqCst);
        let state = self.state();
        self.arriving.fetch_sub(1, Ordering::SeqCst);
        match state.group.clone() {
            None => self.open(state, apply),
            Some(group) => self.join(state, &group, apply),
        }
    }

    /// The first change of a group: its transaction holds nothing else, so
    /// a failure rolls the whole transaction back.
    fn open<T>(
        &self,
        mut state: MutexGuard<'_, State>,
        apply: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> std::result::Result<T, WriteError> {
        run(&state.connection, "BEGIN IMMEDIATE").map_err(WriteError::Sqlite)?;
        match applied(&state.connection, apply) {
            Applied::Done(value) => {
                let group = Arc::new(Group::default());
                group.changes.store(1, Ordering::Relaxed);
                state.group = Some(Arc::clone(&group));
                self.settle(state, &group, true).map(|()| value)
            }
            failed => {
                roll_back(&state.connection);
                drop(state);
                failed.into_result()
            }
        }
    }

    /// A change joining the open group under a savepoint: a failure undoes
    /// only this change, and the group goes on.
    fn join<T>(
        &self,
        state: MutexGuard<'_, State>,
        group: &Arc<Group>,
        apply: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> std::result::Result<T, WriteError> {
        let outcome = match run(&state.connection, "SAVEPOINT joined") {
            Err(e) => Applied::Failed(e),
            Ok(()) => match applied(&state.connection, apply) {
                Applied::Done(value) => match run(&state.connection, "RELEASE joined") {
                    Ok(()) => Applied::Done(value),
                    Err(e) => Applied::Failed(e),
                },
                failed => {
                    // Undone, and the savepoint is gone either way (a
                    // failed RELEASE above leaves it to this too).
                    let undone = run(&state.connection, "ROLLBACK TO joined")
                        .and_then(|()| run(&state.connection, "RELEASE joined"));
                    if let Err(e) = undone {
                        tracing::warn!(error = %e, "could not undo a failed journal change");
                    }
                    failed
                }
            },
        };
        if state.connection.is_autocommit() {
            // SQLite rolled the whole transaction back with this failure
            // (an I/O error, a full disk): the group's earlier changes are
            // gone with it, and their writers must hear so.
            let why = match &outcome {
                Applied::Failed(e) => e.to_string(),
                _ => "its transaction ended early".to_owned(),
            };
            self.give_up(
                state,
                group,
                format!("rolled back with another change: {why}"),
            );
            return outcome.into_result();
        }
        match outcome {
            Applied::Done(value) => {
                group.changes.fetch_add(1, Ordering::Relaxed);
                self.settle(state, group, true).map(|()| value)
            }
            failed => {
                // Nothing of this writer's is in the group: it does not
                // wait for the COMMIT, but commits for the others if it
                // is the last.
                self.settle(state, group, false)?;
                failed.into_result()
            }
        }
    }

    /// Commits `group` when no writer is on its way to join it; otherwise
    /// leaves it open for them and, with `wait`, waits for the last one to
    /// commit it.
    fn settle(
        &self,
        mut state: MutexGuard<'_, State>,
        group: &Arc<Group>,
        wait: bool,
    ) -> std::result::Result<(), WriteError> {
        if self.arriving.load(Ordering::SeqCst) == 0 {
            let committed = run(&state.connection, "COMMIT");
            if committed.is_err() {
                roll_back(&state.connection);
            }
            let outcome = committed.as_ref().map(|_| ()).map_err(|e| e.to_string());
            if outcome.is_ok() {
                self.changes
                    .fetch_add(group.changes.load(Ordering::Relaxed), Ordering::Relaxed);
                self.commits.fetch_add(1, Ordering::Relaxed);
            }
            self.close(&mut state, group, outcome);
            return committed.map_err(WriteError::Sqlite);
        }
        if !wait {
            return Ok(());
        }
        let _state = self.wait(state, |_| group.outcome.get().is_some());
        match group.outcome.get() {
            Some(Err(why)) => Err(WriteError::NotCommitted(why.clone())),
            _ => Ok(()),
        }
    }

    /// The group's transaction is gone: its writers are told `why`.
    fn give_up(&self, mut state: MutexGuard<'_, State>, group: &Arc<Group>, why: String) {
        roll_back(&state.connection);
        self.close(&mut state, group, Err(why));
    }

    fn close(
        &self,
        state: &mut MutexGuard<'_, State>,
        group: &Arc<Group>,
        outcome: std::result::Result<(), String>,
    ) {
        // Set once: only the one holding the mutex with the group open
        // closes it, and it is then no longer open.
        let _ = group.outcome.set(outcome);
        state.group = None;
        if state.waiting > 0 {
            self.settled.notify_all();
        }
    }
}

impl<T> Applied<T> {
    fn into_result(self) -> std::result::Result<T, WriteError> {
        match self {
            Applied::Done(value) => Ok(value),
            Applied::Failed(e) => Err(WriteError::Sqlite(e)),
            // Undone and the group settled: the caller's panic goes on.
            Applied::Panicked(payload) => resume_unwind(payload),
        }
    }
}

/// Runs a change's closure, its panic caught so that the change can be
/// undone and the group go on before the panic reaches its caller.
fn applied<T>(
    connection: &Connection,
    apply: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Applied<T> {
    match catch_unwind(AssertUnwindSafe(|| apply(connection))) {
        Ok(Ok(value)) => Applied::Done(value),
        Ok(Err(e)) => Applied::Failed(e),
        Err(payload) => Applied::Panicked(payload),
    }
}

/// One transaction-control statement, compiled once per connection.
fn run(connection: &Connection, sql: &str) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn roll_back(connection: &Connection) {
    if !connection.is_autocommit()
        && let Err(e) = run(connection, "ROLLBACK")
    {
        tracing::warn!(error = %e, "could not roll back a journal transaction");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::journal::events::{Event, RunnerStarted};
    use crate::journal::{CommitCounts, Journal, JournalError};

    fn event() -> Event {
        Event::RunnerStarted(RunnerStarted {
            command: "test".into(),
            pid: 0,
            open_attempts: 0,
        })
    }

    /// Subjects of the events on `connection`, in order.
    fn subjects(connection: &Connection) -> Vec<String> {
        let mut statement = connection
            .prepare("SELECT subject FROM events ORDER BY seq")
            .unwrap();
        let rows = statement.query_map([], |row| row.get(0)).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    }

    /// Polls until `writers` writers are on their way to the mutex.
    fn until_arriving(journal: &Journal, writers: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while journal.writer.arriving.load(Ordering::SeqCst) < writers {
            assert!(Instant::now() < deadline, "the writers never arrived");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_failing_change_in_a_group_leaves_the_others_committed_and_its_caller_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let journal = Journal::open(&path).unwrap();
        let (opened, opened_rx) = mpsc::channel();
        // What a joining change sees: its group's first change on the
        // shared connection, and not yet on a connection of its own
        // (so it really is in the same, uncommitted transaction).
        let in_group = |c: &crate::journal::change::Change<'_>| {
            let outside = Connection::open(&path).unwrap();
            assert!(subjects(c.tx).contains(&"first".to_owned()));
            assert_eq!(subjects(&outside), Vec::<String>::new());
        };
        let (first, failing, last) = std::thread::scope(|scope| {
            let first = scope.spawn(|| {
                journal.change(|c| {
                    c.record("first", &event())?;
                    opened.send(()).unwrap();
                    // The group stays open until both others wait to join.
                    until_arriving(&journal, 2);
                    Ok(())
                })
            });
            opened_rx.recv().unwrap();
            let failing = scope.spawn(|| {
                journal.change(|c| {
                    in_group(c);
                    c.record("failing", &event())?;
                    c.execute("INSERT INTO attempts (id) VALUES ('no state')", [])
                })
            });
            let last = scope.spawn(|| {
                journal.change(|c| {
                    in_group(c);
                    c.record("last", &event())
                })
            });
            (
                first.join().unwrap(),
                failing.join().unwrap(),
                last.join().unwrap(),
            )
        });
        first.unwrap();
        last.unwrap();
        match failing {
            Err(JournalError::Sqlite { source, .. }) => {
                assert!(source.to_string().contains("NOT NULL"), "{source}")
            }
            other => panic!("the failing change was answered {other:?}"),
        }
        let outside = Connection::open(&path).unwrap();
        assert_eq!(subjects(&outside), ["first", "last"]);
        assert_eq!(journal.verify_chain().unwrap(), None);
        assert_eq!(
            journal.commit_counts(),
            CommitCounts {
                changes: 2,
                commits: 1
            },
            "one COMMIT for both"
        );
    }

    #[test]
    fn a_change_that_panics_in_a_group_is_undone_and_the_group_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let journal = Journal::open(&path).unwrap();
        let (opened, opened_rx) = mpsc::channel();
        let (first, panicked) = std::thread::scope(|scope| {
            let first = scope.spawn(|| {
                journal.change(|c| {
                    c.record("first", &event())?;
                    opened.send(()).unwrap();
                    until_arriving(&journal, 1);
                    Ok(())
                })
            });
            opened_rx.recv().unwrap();
            let panicked = scope.spawn(|| {
                journal.change(|c| -> rusqlite::Result<()> {
                    c.record("panicked", &event())?;
                    panic!("a bug in a writer");
                })
            });
            (first.join().unwrap(), panicked.join())
        });
        first.unwrap();
        assert!(panicked.is_err(), "the panic reaches its caller");
        assert_eq!(subjects(&Connection::open(&path).unwrap()), ["first"]);
        // The connection is usable afterwards.
        journal.change(|c| c.record("after", &event())).unwrap();
        assert_eq!(
            subjects(&Connection::open(&path).unwrap()),
            ["first", "after"]
        );
    }
}
