-- The local journal: state tables, the hash-chained event log and the outbox.
-- Timestamps are RFC 3339 UTC text; ids are UUID text.

CREATE TABLE collections (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    workflow_id   TEXT NOT NULL,
    instance_id   TEXT NOT NULL,
    start_date    TEXT NOT NULL,
    end_date      TEXT,
    schedule_file TEXT NOT NULL,
    schedule_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    journal_seq   INTEGER NOT NULL
);

CREATE TABLE attempts (
    id               TEXT PRIMARY KEY,
    week_id          TEXT NOT NULL REFERENCES weeks(id),
    amc_execution_id TEXT UNIQUE,
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
    journal_seq      INTEGER NOT NULL
);
CREATE INDEX attempts_by_week ON attempts (week_id);
CREATE INDEX attempts_open ON attempts (state) WHERE state IN ('intent', 'submitted');

CREATE TABLE weeks (
    id            TEXT PRIMARY KEY,
    collection_id TEXT NOT NULL REFERENCES collections(id),
    week_start    TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    attempt_id    TEXT REFERENCES attempts(id),
    attempts      INTEGER NOT NULL DEFAULT 0,
    started_at    TEXT,
    completed_at  TEXT,
    record_count  INTEGER,
    data_checksum TEXT,
    error_message TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    journal_seq   INTEGER NOT NULL,
    UNIQUE (collection_id, week_start)
);
CREATE INDEX weeks_by_status ON weeks (collection_id, status);

-- Append-only; each row's hash covers its content and its predecessor's hash.
CREATE TABLE events (
    seq       INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    subject   TEXT NOT NULL,
    payload   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX events_by_subject ON events (subject);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;

-- Rows whose current state Postgres has not seen yet: one entry per row,
-- carrying the journal sequence number of its latest change.
CREATE TABLE outbox (
    entity    TEXT NOT NULL CHECK (entity IN ('collection', 'execution', 'week')),
    entity_id TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    queued_at TEXT NOT NULL,
    PRIMARY KEY (entity, entity_id)
);
CREATE INDEX outbox_by_seq ON outbox (seq);

CREATE TABLE sync_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    last_success_at TEXT,
    last_attempt_at TEXT,
    last_error      TEXT
);
INSERT INTO sync_state (id) VALUES (1);
