-- Indexes the scale benchmark (BENCHMARKS.md, scale) showed were missing.
--
-- `status` sums record_count and counts weeks by status per collection: with
-- record_count in the index both are read from the index alone instead of
-- one table lookup per week of the collection's history. It covers every
-- use of weeks_by_status, which it replaces.
CREATE INDEX weeks_by_status_rows ON weeks (collection_id, status, record_count);
DROP INDEX weeks_by_status;
-- `status` finds the last runner start (and the adoptions since) by event
-- kind: without this it walked the event log back from its end.
CREATE INDEX events_by_kind ON events (kind);
