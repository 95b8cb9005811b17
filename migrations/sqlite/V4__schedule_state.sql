-- The scheduler's own state: which schedules a person paused, and the last
-- decision and run outcome of each, so `chronicle schedules` and the next
-- start need not scan the event log. Every change here also appends an
-- event (schedule.armed, schedule.firing, schedule.run_finished,
-- schedule.paused, schedule.resumed): the events are the record, this table
-- the index.
CREATE TABLE schedule_state (
    name             TEXT PRIMARY KEY,
    paused           INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    paused_at        TEXT,
    -- When a daemon first fired this schedule's cron: before any decision,
    -- catch-up counts missed firings from here.
    armed_at         TEXT,
    -- The scheduled instant of the last decision (RFC 3339 UTC); catch-up
    -- counts missed firings from here.
    last_decision_at TEXT,
    last_reason      TEXT,
    -- `completed`, `failed` or `stopped`, with counts, of the last run.
    last_outcome     TEXT,
    last_outcome_at  TEXT,
    updated_at       TEXT NOT NULL
);

-- One row the health check rewrites to prove the journal takes writes.
CREATE TABLE health_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at TEXT NOT NULL
);
