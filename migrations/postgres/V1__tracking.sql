-- The tracking tables, in the shape of the application chronicle replaces
-- (../shared/seed-app/schema.sql): created when absent, missing columns
-- added to existing ones. Nothing is ever dropped or retyped, and no
-- constraint is added over rows a database already holds (old
-- workflow_executions rows repeat amc_execution_id).
--
-- On the application's database the reference columns are uuid foreign
-- keys to workflows, amc_instances and users; on an empty database there
-- are no such tables, so chronicle keeps AMC's own ids there as text. The
-- warehouse reads which it is at connect (`warehouse::shape`).

CREATE TABLE IF NOT EXISTS report_data_collections (
    id                  uuid PRIMARY KEY,
    collection_id       varchar(255) NOT NULL UNIQUE,
    workflow_id         text,
    instance_id         text,
    collection_type     varchar(100) NOT NULL DEFAULT 'backfill',
    target_weeks        integer NOT NULL DEFAULT 0,
    start_date          date NOT NULL,
    end_date            date NOT NULL,
    status              varchar(50) DEFAULT 'pending',
    progress_percentage integer DEFAULT 0,
    weeks_completed     integer DEFAULT 0,
    error_message       text,
    configuration       jsonb DEFAULT '{}',
    created_at          timestamptz DEFAULT now(),
    updated_at          timestamptz DEFAULT now()
);
-- Tables an older chronicle created lack these.
ALTER TABLE report_data_collections
    ADD COLUMN IF NOT EXISTS collection_id varchar(255),
    ADD COLUMN IF NOT EXISTS collection_type varchar(100),
    ADD COLUMN IF NOT EXISTS target_weeks integer,
    ADD COLUMN IF NOT EXISTS progress_percentage integer,
    ADD COLUMN IF NOT EXISTS configuration jsonb,
    ADD COLUMN IF NOT EXISTS journal_seq bigint;

CREATE TABLE IF NOT EXISTS workflow_executions (
    id                   uuid PRIMARY KEY,
    execution_id         text NOT NULL UNIQUE,
    workflow_id          text NOT NULL,
    status               text NOT NULL,
    progress             integer DEFAULT 0,
    execution_parameters jsonb DEFAULT '{}',
    row_count            integer,
    error_message        text,
    started_at           timestamptz,
    completed_at         timestamptz,
    duration_seconds     integer,
    triggered_by         text,
    created_at           timestamptz DEFAULT now(),
    updated_at           timestamptz DEFAULT now(),
    result_columns       jsonb,
    result_rows          jsonb,
    result_total_rows    integer DEFAULT 0,
    result_sample_size   integer DEFAULT 0,
    instance_id          text,
    amc_execution_id     text,
    execution_mode       text DEFAULT 'ad_hoc',
    amc_workflow_id      text
);
ALTER TABLE workflow_executions
    ADD COLUMN IF NOT EXISTS execution_id text,
    ADD COLUMN IF NOT EXISTS progress integer,
    ADD COLUMN IF NOT EXISTS duration_seconds integer,
    ADD COLUMN IF NOT EXISTS result_columns jsonb,
    ADD COLUMN IF NOT EXISTS result_rows jsonb,
    ADD COLUMN IF NOT EXISTS result_total_rows integer,
    ADD COLUMN IF NOT EXISTS result_sample_size integer,
    ADD COLUMN IF NOT EXISTS execution_mode text,
    ADD COLUMN IF NOT EXISTS amc_workflow_id text,
    ADD COLUMN IF NOT EXISTS journal_seq bigint;
CREATE INDEX IF NOT EXISTS workflow_executions_amc_execution_id_idx
    ON workflow_executions (amc_execution_id);

CREATE TABLE IF NOT EXISTS report_data_weeks (
    id                     uuid PRIMARY KEY,
    collection_id          uuid REFERENCES report_data_collections (id) ON DELETE CASCADE,
    week_start_date        date NOT NULL,
    week_end_date          date NOT NULL,
    status                 varchar(50) DEFAULT 'pending',
    execution_date         timestamptz,
    record_count           integer,
    data_checksum          varchar(255),
    error_message          text,
    created_at             timestamptz DEFAULT now(),
    updated_at             timestamptz DEFAULT now(),
    started_at             timestamptz,
    completed_at           timestamptz,
    amc_execution_id       varchar(255),
    execution_id           uuid REFERENCES workflow_executions (id) ON DELETE SET NULL,
    execution_time_seconds integer,
    summary_stats          jsonb,
    UNIQUE (collection_id, week_start_date)
);
ALTER TABLE report_data_weeks
    ADD COLUMN IF NOT EXISTS execution_date timestamptz,
    ADD COLUMN IF NOT EXISTS execution_time_seconds integer,
    ADD COLUMN IF NOT EXISTS summary_stats jsonb,
    ADD COLUMN IF NOT EXISTS journal_seq bigint;
CREATE INDEX IF NOT EXISTS report_data_weeks_execution_id_idx
    ON report_data_weeks (execution_id) WHERE execution_id IS NOT NULL;

-- Supabase grants the public `anon` role every table in `public`: with row
-- level security on and no policy, it sees and changes none of these rows.
-- The application's tables have it on already; chronicle's service
-- connection owns the tables (or bypasses RLS) and is not affected.
ALTER TABLE report_data_collections ENABLE ROW LEVEL SECURITY;
ALTER TABLE workflow_executions ENABLE ROW LEVEL SECURITY;
ALTER TABLE report_data_weeks ENABLE ROW LEVEL SECURITY;
