-- Tracking tables chronicle keeps in Supabase. Compatible with the
-- application it replaces: tables are created when absent, missing columns are
-- added to existing ones, and nothing is ever dropped.

CREATE TABLE IF NOT EXISTS report_data_collections (
    id uuid PRIMARY KEY
);
ALTER TABLE report_data_collections
    ADD COLUMN IF NOT EXISTS name text,
    ADD COLUMN IF NOT EXISTS workflow_id text,
    ADD COLUMN IF NOT EXISTS instance_id text,
    ADD COLUMN IF NOT EXISTS start_date date,
    ADD COLUMN IF NOT EXISTS end_date date,
    ADD COLUMN IF NOT EXISTS status text,
    ADD COLUMN IF NOT EXISTS weeks_completed int,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS journal_seq bigint;
CREATE UNIQUE INDEX IF NOT EXISTS report_data_collections_name_key
    ON report_data_collections (name);

CREATE TABLE IF NOT EXISTS workflow_executions (
    id uuid PRIMARY KEY
);
ALTER TABLE workflow_executions
    ADD COLUMN IF NOT EXISTS amc_execution_id text,
    ADD COLUMN IF NOT EXISTS workflow_id text,
    ADD COLUMN IF NOT EXISTS instance_id text,
    ADD COLUMN IF NOT EXISTS status text,
    ADD COLUMN IF NOT EXISTS execution_parameters jsonb,
    ADD COLUMN IF NOT EXISTS started_at timestamptz,
    ADD COLUMN IF NOT EXISTS completed_at timestamptz,
    ADD COLUMN IF NOT EXISTS row_count int,
    ADD COLUMN IF NOT EXISTS error_message text,
    ADD COLUMN IF NOT EXISTS triggered_by text,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS journal_seq bigint;
CREATE UNIQUE INDEX IF NOT EXISTS workflow_executions_amc_execution_id_key
    ON workflow_executions (amc_execution_id);

CREATE TABLE IF NOT EXISTS report_data_weeks (
    id uuid PRIMARY KEY
);
ALTER TABLE report_data_weeks
    ADD COLUMN IF NOT EXISTS collection_id uuid
        REFERENCES report_data_collections (id) ON DELETE CASCADE,
    ADD COLUMN IF NOT EXISTS week_start_date date,
    ADD COLUMN IF NOT EXISTS week_end_date date,
    ADD COLUMN IF NOT EXISTS status text,
    ADD COLUMN IF NOT EXISTS execution_id uuid REFERENCES workflow_executions (id),
    ADD COLUMN IF NOT EXISTS amc_execution_id text,
    ADD COLUMN IF NOT EXISTS started_at timestamptz,
    ADD COLUMN IF NOT EXISTS completed_at timestamptz,
    ADD COLUMN IF NOT EXISTS record_count int,
    ADD COLUMN IF NOT EXISTS data_checksum text,
    ADD COLUMN IF NOT EXISTS error_message text,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS journal_seq bigint;
CREATE UNIQUE INDEX IF NOT EXISTS report_data_weeks_collection_week_key
    ON report_data_weeks (collection_id, week_start_date);
CREATE INDEX IF NOT EXISTS report_data_weeks_execution_id_idx
    ON report_data_weeks (execution_id) WHERE execution_id IS NOT NULL;
