-- The journal's hash-chain head as of each sync: what Postgres has seen of
-- the event log. An audit compares the journal with every head recorded for
-- it; a journal rewritten on the host no longer matches. It lives in the
-- `chronicle` schema, which only its owner may use: `anon` can neither read
-- nor delete the audit's anchor.
DO $$
BEGIN
    IF to_regclass('public.chronicle_chain_heads') IS NOT NULL
       AND to_regclass('chronicle.chain_heads') IS NULL THEN
        ALTER TABLE public.chronicle_chain_heads SET SCHEMA chronicle;
        ALTER TABLE chronicle.chronicle_chain_heads RENAME TO chain_heads;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS chronicle.chain_heads (
    journal_id  text NOT NULL,
    seq         bigint NOT NULL,
    hash        text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (journal_id, seq)
);
