-- Indexes the scale benchmark (BENCHMARKS.md, scale) showed were missing.
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
