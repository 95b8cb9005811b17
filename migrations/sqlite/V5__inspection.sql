-- Inspection and audit support (issue 7).

-- A stable identity for this journal, minted once: the key under which
-- Postgres keeps the chain heads it was shown, so a journal rewritten on the
-- host no longer matches what Postgres saw.
CREATE TABLE journal_identity (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    journal_id TEXT NOT NULL
);
INSERT INTO journal_identity (id, journal_id) VALUES (1, lower(hex(randomblob(16))));

-- The journal_seq of the state Postgres last acknowledged for each row (the
-- values themselves follow from the events up to it), so lineage can show
-- what Postgres holds without asking it. Written in the transaction that
-- acknowledges the batch.
CREATE TABLE synced_rows (
    entity      TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    journal_seq INTEGER NOT NULL,
    synced_at   TEXT NOT NULL,
    PRIMARY KEY (entity, entity_id)
) WITHOUT ROWID;

-- `lineage <date>` and the per-week "synced" flag must cost the same on a
-- journal of 100,000 weeks as on one of ten.
CREATE INDEX weeks_by_start ON weeks (week_start);
CREATE INDEX outbox_by_row ON outbox (entity, entity_id);
CREATE INDEX quarantine_by_row ON quarantine (entity, entity_id);
CREATE INDEX events_by_kind ON events (kind, seq);
