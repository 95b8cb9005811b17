-- Fewer pages per commit (issue 16, BENCHMARKS.md, journal): every
-- structure an intent or a submitted touches costs a WAL page and its share
-- of the fsync. Readers keep their answers and an index each; the journal
-- section of BENCHMARKS.md names them with their query plans (also checked
-- by `journal::open::tests`). Run with foreign keys off (`open`): the
-- attempts table is made anew under its own name.

-- 1. One totals table instead of three (V7's week_totals and
-- journal_totals, V9's attempt_totals): a commit that moved a week's status
-- and its attempt's state wrote two or three pages for them, now one. The
-- old names stay as views, so their readers read what they read before.
CREATE TABLE totals (
    kind          TEXT NOT NULL CHECK (kind IN ('week', 'attempt', 'execution')),
    -- The week's collection; '' for attempts and executions.
    collection_id TEXT NOT NULL DEFAULT '',
    -- The week's status or the attempt's state; '' for executions.
    state         TEXT NOT NULL DEFAULT '',
    n             INTEGER NOT NULL,
    -- Rows collected, for weeks; 0 otherwise.
    records       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, collection_id, state)
) WITHOUT ROWID;
INSERT INTO totals (kind, collection_id, state, n, records)
    SELECT 'week', collection_id, status, weeks, records FROM week_totals;
INSERT INTO totals (kind, state, n) SELECT 'attempt', state, attempts FROM attempt_totals;
INSERT INTO totals (kind, n) SELECT 'execution', executions FROM journal_totals WHERE id = 1;

DROP TRIGGER week_totals_insert;
DROP TRIGGER week_totals_update;
DROP TRIGGER week_totals_delete;
DROP TABLE week_totals;
DROP TABLE attempt_totals;
DROP TABLE journal_totals;

CREATE VIEW week_totals AS
    SELECT collection_id, state AS status, n AS weeks, records FROM totals WHERE kind = 'week';
CREATE VIEW attempt_totals AS
    SELECT state, n AS attempts FROM totals WHERE kind = 'attempt';
CREATE VIEW journal_totals AS
    SELECT 1 AS id, coalesce((SELECT n FROM totals WHERE kind = 'execution'), 0) AS executions;

CREATE TRIGGER week_totals_insert AFTER INSERT ON weeks
BEGIN
    INSERT INTO totals (kind, collection_id, state, n, records)
        VALUES ('week', NEW.collection_id, NEW.status, 1, coalesce(NEW.record_count, 0))
        ON CONFLICT (kind, collection_id, state)
        DO UPDATE SET n = n + 1, records = records + excluded.records;
END;
CREATE TRIGGER week_totals_update AFTER UPDATE OF collection_id, status, record_count ON weeks
BEGIN
    UPDATE totals SET n = n - 1, records = records - coalesce(OLD.record_count, 0)
        WHERE kind = 'week' AND collection_id = OLD.collection_id AND state = OLD.status;
    INSERT INTO totals (kind, collection_id, state, n, records)
        VALUES ('week', NEW.collection_id, NEW.status, 1, coalesce(NEW.record_count, 0))
        ON CONFLICT (kind, collection_id, state)
        DO UPDATE SET n = n + 1, records = records + excluded.records;
END;
CREATE TRIGGER week_totals_delete AFTER DELETE ON weeks
BEGIN
    UPDATE totals SET n = n - 1, records = records - coalesce(OLD.record_count, 0)
        WHERE kind = 'week' AND collection_id = OLD.collection_id AND state = OLD.status;
END;

-- 2. The attempts table anew, same columns in the same order:
-- - AMC's id unique only where set: the NULL of every intent was an entry
--   of the column's UNIQUE index (a page for the intent, another for its
--   removal when AMC answered).
-- - V1's attempts_open and the NULLs of that index in one partial index:
--   open attempts (recovery, `cancel`, `status`, `runner.started`) and the
--   attempts without an AMC id (/metrics) are both read from it. Keyed by
--   the attempt's id, not its state: an intent becoming submitted rewrites
--   its entry in place, where a state key moved it to another page, and
--   ids are UUIDv7, so new entries go to the end.
-- (WITHOUT ROWID, to make the row and its id one b-tree, was tried: its
-- appends split pages as a rowid table's do not, and it saved nothing.)
CREATE TABLE attempts_v10 (
    id               TEXT PRIMARY KEY,
    week_id          TEXT NOT NULL REFERENCES weeks(id),
    amc_execution_id TEXT,
    state            TEXT NOT NULL
        CHECK (state IN ('intent', 'submitted', 'succeeded', 'failed', 'abandoned')),
    amc_status       TEXT,
    request          TEXT NOT NULL,
    triggered_by     TEXT NOT NULL,
    row_count        INTEGER,
    data_checksum    TEXT,
    error_message    TEXT,
    created_at       TEXT NOT NULL,
    submitted_at     TEXT,
    completed_at     TEXT,
    updated_at       TEXT NOT NULL,
    journal_seq      INTEGER NOT NULL,
    readable_id      TEXT,
    superseded_at    TEXT
);
INSERT INTO attempts_v10 (id, week_id, amc_execution_id, state, amc_status, request,
        triggered_by, row_count, data_checksum, error_message, created_at, submitted_at,
        completed_at, updated_at, journal_seq, readable_id, superseded_at)
    SELECT id, week_id, amc_execution_id, state, amc_status, request,
        triggered_by, row_count, data_checksum, error_message, created_at, submitted_at,
        completed_at, updated_at, journal_seq, readable_id, superseded_at
    FROM attempts;
-- Its indexes and triggers (V1, V7, V9) go with it.
DROP TABLE attempts;
ALTER TABLE attempts_v10 RENAME TO attempts;

CREATE INDEX attempts_by_week ON attempts (week_id);
CREATE UNIQUE INDEX attempts_by_execution ON attempts (amc_execution_id)
    WHERE amc_execution_id IS NOT NULL;
CREATE INDEX attempts_open ON attempts (id)
    WHERE state IN ('intent', 'submitted') OR amc_execution_id IS NULL;

CREATE TRIGGER unresolved_cleared AFTER UPDATE ON attempts
BEGIN
    DELETE FROM unresolved_attempts WHERE attempt_id = NEW.id;
END;

CREATE TRIGGER attempt_totals_insert AFTER INSERT ON attempts
BEGIN
    INSERT INTO totals (kind, state, n) VALUES ('attempt', NEW.state, 1)
        ON CONFLICT (kind, collection_id, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER attempt_totals_update AFTER UPDATE OF state ON attempts
WHEN OLD.state != NEW.state
BEGIN
    UPDATE totals SET n = n - 1 WHERE kind = 'attempt' AND collection_id = '' AND state = OLD.state;
    INSERT INTO totals (kind, state, n) VALUES ('attempt', NEW.state, 1)
        ON CONFLICT (kind, collection_id, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER attempt_totals_delete AFTER DELETE ON attempts
BEGIN
    UPDATE totals SET n = n - 1 WHERE kind = 'attempt' AND collection_id = '' AND state = OLD.state;
END;

CREATE TRIGGER executions_insert AFTER INSERT ON attempts
WHEN NEW.amc_execution_id IS NOT NULL
BEGIN
    INSERT INTO totals (kind, n) VALUES ('execution', 1)
        ON CONFLICT (kind, collection_id, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER executions_update AFTER UPDATE OF amc_execution_id ON attempts
WHEN (OLD.amc_execution_id IS NULL) != (NEW.amc_execution_id IS NULL)
BEGIN
    INSERT INTO totals (kind, n)
        VALUES ('execution', CASE WHEN NEW.amc_execution_id IS NULL THEN -1 ELSE 1 END)
        ON CONFLICT (kind, collection_id, state) DO UPDATE SET n = n + excluded.n;
END;
CREATE TRIGGER executions_delete AFTER DELETE ON attempts
WHEN OLD.amc_execution_id IS NOT NULL
BEGIN
    UPDATE totals SET n = n - 1 WHERE kind = 'execution' AND collection_id = '' AND state = '';
END;

-- 3. Weeks still to do instead of every week by (collection, status,
-- records): `plan` reads only these (`INDEXED BY weeks_to_do`), and the
-- counts and records `status` read from the old index come from the totals
-- since V7. A week leaving pending for running now rewrites one entry in
-- place (the key holds no status) instead of moving it, and a completed
-- week leaves the index.
CREATE INDEX weeks_to_do ON weeks (collection_id, week_start)
    WHERE status IN ('pending', 'running', 'failed');
DROP INDEX weeks_by_status_rows;
