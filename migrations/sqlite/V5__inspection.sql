-- Inspection and audit support (issue 7).

-- A stable identity for this journal, minted once: the key under which
-- Postgres keeps the chain heads it was shown, so a journal rewritten on the
-- host no longer matches what Postgres saw.
CREATE TABLE journal_identity (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    journal_id TEXT NOT NULL
);
INSERT INTO journal_identity (id, journal_id) VALUES (1, lower(hex(randomblob(16))));

-- `lineage <date>` and `events --kind` must cost the same on a journal of
-- 100,000 weeks as on one of ten. The outbox gets no index: its deletes are
-- on the reconciler's hot path, and it holds only what waits for Postgres.
CREATE INDEX weeks_by_start ON weeks (week_start);
CREATE INDEX quarantine_by_row ON quarantine (entity, entity_id);
CREATE INDEX events_by_kind ON events (kind, seq);
