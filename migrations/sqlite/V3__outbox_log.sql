-- The outbox becomes an append-only log read and acknowledged in insertion
-- order: acknowledging a batch then deletes a contiguous run of rows instead
-- of scattered entries of a (entity, entity_id) key, which cost more than
-- the batch's Postgres round trip. Several changes of one row still collapse:
-- a batch sends each row's current state once.
CREATE TABLE outbox_log (
    id        INTEGER PRIMARY KEY,
    entity    TEXT NOT NULL CHECK (entity IN ('collection', 'execution', 'week')),
    entity_id TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    queued_at TEXT NOT NULL
);
INSERT INTO outbox_log (entity, entity_id, seq, queued_at)
    SELECT entity, entity_id, seq, queued_at FROM outbox ORDER BY seq;
DROP TABLE outbox;
ALTER TABLE outbox_log RENAME TO outbox;
