-- The seed-003 transaction projection, and the ledger that makes applying an
-- event idempotent: an event changes the projection only in the same database
-- transaction that first inserts its message id here.

CREATE TABLE applied_messages (
    message_id      UUID        PRIMARY KEY,
    handler         TEXT        NOT NULL,
    applied_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE transactions (
    -- Identifiers compare bytewise (COLLATE "C"): cheaper index work, and
    -- no dependence on the server's locale.
    id                 TEXT COLLATE "C" PRIMARY KEY,
    user_id            TEXT COLLATE "C" NOT NULL,
    transaction_type   TEXT          NOT NULL,
    product            TEXT,
    status             TEXT          NOT NULL,
    currency           TEXT          NOT NULL,
    amount             NUMERIC(24,8) NOT NULL,
    created_at         TIMESTAMPTZ,
    metadata           JSONB         NOT NULL DEFAULT '{}',
    enrichment         JSONB         NOT NULL DEFAULT '{}',
    enriched           BOOLEAN       NOT NULL,
    enriched_at        TIMESTAMPTZ,
    searchable_content TEXT          NOT NULL,
    version            BIGINT        NOT NULL CHECK (version > 0),
    last_event_type    TEXT          NOT NULL,
    last_message_id    UUID          NOT NULL,
    updated_at         TIMESTAMPTZ   NOT NULL,
    deleted_at         TIMESTAMPTZ
);
CREATE INDEX transactions_by_user ON transactions (user_id, updated_at DESC);
