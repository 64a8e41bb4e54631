-- A provable audit trail (issue 11): every entry of `audit_log` belongs to a
-- chain and carries its sequence number in it and a SHA-256 hash over its
-- fields and the previous entry's hash (the encoding is in the README).
-- Signed checkpoints of each chain's head are kept here and in a file
-- outside the database.
--
-- No table here is ever UPDATEd: a chain's head is its entry with the
-- highest sequence number, and two writers can never fork a chain because
-- (chain_id, chain_seq) is unique — the second to commit a sequence number
-- fails and rebuilds its batch from the new head. So the role that runs
-- custodian needs only INSERT and SELECT on the audit tables (see the end).

-- The chains: one per (topic, partition) for pipeline entries, and one
-- named 'operator' for replays and discards written by the HTTP side.
CREATE TABLE audit_chains (
    chain_id        INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'partition/<topic>/<partition>' or 'operator' (topic names cannot
    -- hold '/').
    name            TEXT        NOT NULL UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO audit_chains (name) VALUES ('operator');

-- NULL on rows written with audit.chain = false; legacy rows (the *_v1
-- tables) predate chaining altogether.
ALTER TABLE audit_log
    ADD COLUMN chain_id   INTEGER REFERENCES audit_chains (chain_id),
    ADD COLUMN chain_seq  BIGINT,
    ADD COLUMN entry_hash BYTEA,
    ADD CONSTRAINT audit_log_chained_fully CHECK (
        (chain_id IS NULL AND chain_seq IS NULL AND entry_hash IS NULL)
        OR (chain_id IS NOT NULL AND chain_seq >= 1 AND octet_length(entry_hash) = 32)),
    -- The fork barrier, and the order `audit verify` reads a chain in.
    ADD CONSTRAINT audit_log_chain_seq UNIQUE (chain_id, chain_seq);

-- Signed heads. The same lines are appended to audit.checkpoint_file, which
-- is the copy that counts: this table is as open to a superuser as the rest.
CREATE TABLE audit_checkpoints (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain_id        INTEGER     NOT NULL REFERENCES audit_chains (chain_id),
    chain_seq       BIGINT      NOT NULL,
    head_hash       BYTEA       NOT NULL,
    signed_at       TIMESTAMPTZ NOT NULL,
    -- The whole line as written to the file (note and signature).
    line            TEXT        NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX audit_checkpoints_by_chain ON audit_checkpoints (chain_id, chain_seq);

CREATE TRIGGER audit_chains_append_only BEFORE UPDATE OR DELETE ON audit_chains
    FOR EACH ROW EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER audit_chains_no_truncate BEFORE TRUNCATE ON audit_chains
    FOR EACH STATEMENT EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION custodian_refuse_change();

-- The role custodian runs as (through a LOGIN role that is a member of it,
-- see the README): INSERT and SELECT on the audit tables and nothing else on
-- them; the usual rights on the projections it maintains. Roles belong to
-- the server, not the database, so it may exist already (another database,
-- or a migration running beside this one).
DO $$
BEGIN
    CREATE ROLE custodian_audit_writer NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
GRANT USAGE ON SCHEMA public TO custodian_audit_writer;
GRANT SELECT, INSERT ON audit_log, audit_chains, audit_checkpoints,
    message_audit_v1, message_payloads_v1 TO custodian_audit_writer;
GRANT SELECT ON message_audit, message_payloads, __diesel_schema_migrations
    TO custodian_audit_writer;
DO $$
DECLARE
    t TEXT;
BEGIN
    -- Every other table of the schema is custodian's working state
    -- (projections, applied ids): full row rights, no DDL.
    FOR t IN
        SELECT tablename FROM pg_tables
         WHERE schemaname = 'public'
           AND tablename NOT IN ('audit_log', 'audit_chains', 'audit_checkpoints',
                                 'message_audit_v1', 'message_payloads_v1',
                                 '__diesel_schema_migrations')
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO custodian_audit_writer', t);
    END LOOP;
END
$$;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO custodian_audit_writer;
