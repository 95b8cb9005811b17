-- Rows Postgres refused (constraint, type, permission), kept with the error
-- for the operator; their outbox entries are removed so the queue moves on.
CREATE TABLE quarantine (
    id             INTEGER PRIMARY KEY,
    entity         TEXT NOT NULL,
    entity_id      TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    error          TEXT NOT NULL,
    quarantined_at TEXT NOT NULL
);
