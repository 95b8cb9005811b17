-- Operating chronicle day to day (issue 17): re-runs, requests a running
-- daemon carries out, alerts that are never lost, the figures /metrics and
-- `status` read in constant time, and attempts left unresolved made visible.

-- A re-run a person asked for keeps the earlier attempt, marked superseded
-- (`week.rerun_requested`): NULL while the attempt is its week's current one
-- or was never replaced.
ALTER TABLE attempts ADD COLUMN superseded_at TEXT;

-- Requests the running daemon carries out for another process (`rerun`,
-- `backfill`, `cancel` while `run` holds the runner lock), or the command
-- itself when no daemon runs. Every change is also an event (request.made,
-- request.started, request.finished): the events are the record, this
-- table the index the daemon polls.
CREATE TABLE requests (
    id          INTEGER PRIMARY KEY,
    -- `rerun`, `backfill` or `cancel`.
    kind        TEXT NOT NULL,
    -- The operation as JSON (schedule, week, range, key, reason, ...).
    operation   TEXT NOT NULL,
    -- The OS user who asked.
    made_by     TEXT,
    state       TEXT NOT NULL CHECK (state IN ('made', 'started', 'finished')),
    -- `completed`, `failed` or `refused` once finished.
    outcome     TEXT,
    -- What the command prints, as the one who carried it out wrote it.
    message     TEXT,
    made_at     TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT
);
-- The daemon's poll reads only the few requests not finished.
CREATE INDEX requests_open ON requests (id) WHERE state != 'finished';

-- Alerts: raised in the same transaction as the change that causes them
-- (or by the daemon's checks, for time-based ones), delivered by the
-- daemon. `id` is UUIDv5 of the cause: the same cause never raises two.
CREATE TABLE alerts (
    id           TEXT PRIMARY KEY,
    -- `week_failed`, `row_quarantined`, `sync_lag`, `credentials_refused`,
    -- `firing_skipped`, `attempt_unresolved`.
    kind         TEXT NOT NULL,
    subject      TEXT NOT NULL,
    summary      TEXT NOT NULL,
    -- The alert's details as JSON.
    details      TEXT NOT NULL,
    raised_at    TEXT NOT NULL,
    -- Set once every configured receiver answered 2xx.
    delivered_at TEXT
);
CREATE INDEX alerts_undelivered ON alerts (raised_at) WHERE delivered_at IS NULL;

-- Delivery to each receiver (`webhook`, `slack`): a receiver that already
-- has an alert is not sent it again while another one is down.
CREATE TABLE alert_deliveries (
    alert_id     TEXT NOT NULL REFERENCES alerts(id),
    receiver     TEXT NOT NULL,
    tries        INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    next_try_at  TEXT,
    delivered_at TEXT,
    PRIMARY KEY (alert_id, receiver)
) WITHOUT ROWID;

-- Open attempts whose latest event is `attempt.unresolved`, with its reason:
-- what `status`, `weeks` and /metrics show without reading the log. Any
-- later transition of the attempt updates its row, and that clears it.
CREATE TABLE unresolved_attempts (
    attempt_id TEXT PRIMARY KEY,
    week_id    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    at         TEXT NOT NULL,
    seq        INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO unresolved_attempts (attempt_id, week_id, reason, at, seq)
    SELECT e.subject, json_extract(e.payload, '$.week_id'),
           json_extract(e.payload, '$.reason'), e.at, e.seq
    FROM attempts a
    JOIN events e ON e.seq = (SELECT max(seq) FROM events WHERE subject = a.id)
    WHERE a.state IN ('intent', 'submitted') AND e.kind = 'attempt.unresolved';
CREATE TRIGGER unresolved_cleared AFTER UPDATE ON attempts
BEGIN
    DELETE FROM unresolved_attempts WHERE attempt_id = NEW.id;
END;

-- Attempts by state, kept by triggers like V7's totals: /metrics reads
-- these instead of counting every attempt of the history at each scrape.
CREATE TABLE attempt_totals (
    state    TEXT PRIMARY KEY,
    attempts INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO attempt_totals (state, attempts)
    SELECT state, count(*) FROM attempts GROUP BY state;
CREATE TRIGGER attempt_totals_insert AFTER INSERT ON attempts
BEGIN
    INSERT INTO attempt_totals (state, attempts) VALUES (NEW.state, 1)
        ON CONFLICT (state) DO UPDATE SET attempts = attempts + 1;
END;
CREATE TRIGGER attempt_totals_update AFTER UPDATE OF state ON attempts
WHEN OLD.state != NEW.state
BEGIN
    UPDATE attempt_totals SET attempts = attempts - 1 WHERE state = OLD.state;
    INSERT INTO attempt_totals (state, attempts) VALUES (NEW.state, 1)
        ON CONFLICT (state) DO UPDATE SET attempts = attempts + 1;
END;
CREATE TRIGGER attempt_totals_delete AFTER DELETE ON attempts
BEGIN
    UPDATE attempt_totals SET attempts = attempts - 1 WHERE state = OLD.state;
END;

-- Per schedule, for /metrics: firings skipped (overlap, pause) and when a
-- run last completed.
ALTER TABLE schedule_state ADD COLUMN skipped_firings INTEGER NOT NULL DEFAULT 0;
ALTER TABLE schedule_state ADD COLUMN last_success_at TEXT;
-- One pass over the log, not one per schedule.
UPDATE schedule_state SET skipped_firings = t.skipped, last_success_at = t.success
FROM (SELECT json_extract(payload, '$.schedule') AS name,
             sum(kind = 'schedule.firing'
                 AND json_extract(payload, '$.reason') IN ('skipped-overlap', 'skipped-paused'))
                 AS skipped,
             max(CASE WHEN kind = 'schedule.run_finished'
                       AND json_extract(payload, '$.outcome') = 'completed' THEN at END)
                 AS success
      FROM events WHERE kind IN ('schedule.firing', 'schedule.run_finished')
      GROUP BY 1) AS t
WHERE t.name = schedule_state.name;
