-- The application's own database (issue 12): collections chronicle attached
-- to, weeks and executions it imported from there, and the results the
-- application's dashboards read.

-- `coll_...` as Postgres knows it: the application's own id for an attached
-- collection; NULL means derived from the collection id.
ALTER TABLE collections ADD COLUMN readable_id TEXT;
-- Where an attached collection came from (JSON), NULL for one chronicle made.
ALTER TABLE collections ADD COLUMN attached_from TEXT;

-- `exec_...` as Postgres knows it: the application's own id for an imported
-- execution; NULL means derived from the attempt id.
ALTER TABLE attempts ADD COLUMN readable_id TEXT;

-- What a succeeded attempt's result looked like, for the dashboards: kept
-- beside the attempt so the attempt rows every commit touches stay small.
CREATE TABLE attempt_results (
    attempt_id    TEXT PRIMARY KEY REFERENCES attempts(id),
    columns       TEXT NOT NULL,
    sample_rows   TEXT,
    total_rows    INTEGER NOT NULL,
    sample_size   INTEGER NOT NULL,
    summary_stats TEXT NOT NULL
);
