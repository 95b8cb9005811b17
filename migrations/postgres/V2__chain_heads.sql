-- The journal's hash-chain head as of each sync: what Postgres has seen of
-- the event log. An audit compares the journal with every head recorded for
-- it; a journal rewritten on the host no longer matches.
CREATE TABLE IF NOT EXISTS chronicle_chain_heads (
    journal_id  text NOT NULL,
    seq         bigint NOT NULL,
    hash        text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (journal_id, seq)
);
