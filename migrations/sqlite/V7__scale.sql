-- Indexes and running totals the scale benchmark (BENCHMARKS.md, scale)
-- showed were missing: 20 years of history must cost what one week does.
--
-- `status` sums record_count and counts weeks by status per collection: with
-- record_count in the index both are read from the index alone instead of
-- one table lookup per week of the collection's history. It covers every
-- use of weeks_by_status, which it replaces.
CREATE INDEX weeks_by_status_rows ON weeks (collection_id, status, record_count);
DROP INDEX weeks_by_status;
-- `status` finds the last runner start (and the adoptions since) by event
-- kind: without these it walked the event log back from its end. Partial,
-- so the events of ordinary commits (intents, statuses, outcomes) add no
-- index page to the commit (BENCHMARKS.md, journal).
CREATE INDEX events_runner_started ON events (seq) WHERE kind = 'runner.started';
CREATE INDEX events_attempt_adopted ON events (seq) WHERE kind = 'attempt.adopted';
-- For the same reason V5's index of every event by kind goes: it added an
-- index page to every commit for `chronicle events --kind`, an occasional
-- audit query that can afford to filter the log as it streams it.
DROP INDEX events_by_kind;

-- Running totals `status` reads instead of counting the whole history each
-- time (weeks by status and rows collected per collection, executions AMC
-- holds): kept by triggers, so every path that changes weeks or attempts,
-- now or later, keeps them true. Rows are never deleted by chronicle; the
-- delete triggers keep the totals true if someone does.
CREATE TABLE week_totals (
    collection_id TEXT NOT NULL,
    status        TEXT NOT NULL,
    weeks         INTEGER NOT NULL,
    records       INTEGER NOT NULL,
    PRIMARY KEY (collection_id, status)
) WITHOUT ROWID;
INSERT INTO week_totals (collection_id, status, weeks, records)
    SELECT collection_id, status, count(*), coalesce(sum(record_count), 0)
    FROM weeks GROUP BY collection_id, status;

CREATE TRIGGER week_totals_insert AFTER INSERT ON weeks
BEGIN
    INSERT INTO week_totals (collection_id, status, weeks, records)
        VALUES (NEW.collection_id, NEW.status, 1, coalesce(NEW.record_count, 0))
        ON CONFLICT (collection_id, status)
        DO UPDATE SET weeks = weeks + 1, records = records + excluded.records;
END;
CREATE TRIGGER week_totals_update AFTER UPDATE OF collection_id, status, record_count ON weeks
BEGIN
    UPDATE week_totals
        SET weeks = weeks - 1, records = records - coalesce(OLD.record_count, 0)
        WHERE collection_id = OLD.collection_id AND status = OLD.status;
    INSERT INTO week_totals (collection_id, status, weeks, records)
        VALUES (NEW.collection_id, NEW.status, 1, coalesce(NEW.record_count, 0))
        ON CONFLICT (collection_id, status)
        DO UPDATE SET weeks = weeks + 1, records = records + excluded.records;
END;
CREATE TRIGGER week_totals_delete AFTER DELETE ON weeks
BEGIN
    UPDATE week_totals
        SET weeks = weeks - 1, records = records - coalesce(OLD.record_count, 0)
        WHERE collection_id = OLD.collection_id AND status = OLD.status;
END;

CREATE TABLE journal_totals (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    executions INTEGER NOT NULL
);
INSERT INTO journal_totals (id, executions)
    SELECT 1, count(*) FROM attempts WHERE amc_execution_id IS NOT NULL;
CREATE TRIGGER executions_insert AFTER INSERT ON attempts
WHEN NEW.amc_execution_id IS NOT NULL
BEGIN
    UPDATE journal_totals SET executions = executions + 1;
END;
CREATE TRIGGER executions_update AFTER UPDATE OF amc_execution_id ON attempts
WHEN (OLD.amc_execution_id IS NULL) != (NEW.amc_execution_id IS NULL)
BEGIN
    UPDATE journal_totals
        SET executions = executions + CASE WHEN NEW.amc_execution_id IS NULL THEN -1 ELSE 1 END;
END;
CREATE TRIGGER executions_delete AFTER DELETE ON attempts
WHEN OLD.amc_execution_id IS NOT NULL
BEGIN
    UPDATE journal_totals SET executions = executions - 1;
END;
