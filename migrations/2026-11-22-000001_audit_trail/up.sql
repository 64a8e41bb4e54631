-- The audit trail: one row per lifecycle step of every message, and the
-- original record once per message. Both tables are append-only: the database
-- itself refuses UPDATE, DELETE and TRUNCATE on them.

CREATE TABLE message_audit (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id      UUID        NOT NULL,
    status          TEXT        NOT NULL CHECK (status IN (
                        'MESSAGE_RECEIVED', 'MESSAGE_PROCESSED', 'MESSAGE_FAILED',
                        'MESSAGE_DLQ', 'MESSAGE_DUPLICATE', 'MESSAGE_REPLAYED',
                        'MESSAGE_DISCARDED')),
    topic           TEXT        NOT NULL,
    kafka_partition INTEGER     NOT NULL,
    kafka_offset    BIGINT      NOT NULL,
    message_key     TEXT,
    event_type      TEXT,
    attempt         INTEGER     NOT NULL DEFAULT 1,
    error           TEXT,
    consumer_group  TEXT        NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX message_audit_by_message ON message_audit (message_id, id);

CREATE TABLE message_payloads (
    message_id      UUID        PRIMARY KEY,
    topic           TEXT        NOT NULL,
    kafka_partition INTEGER     NOT NULL,
    kafka_offset    BIGINT      NOT NULL,
    message_key     BYTEA,
    payload         BYTEA,
    headers         JSONB,
    kafka_timestamp TIMESTAMPTZ,
    first_seen_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE FUNCTION custodian_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'custodian: % on % refused: the audit trail is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER message_audit_append_only BEFORE UPDATE OR DELETE ON message_audit
    FOR EACH ROW EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER message_audit_no_truncate BEFORE TRUNCATE ON message_audit
    FOR EACH STATEMENT EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER message_payloads_append_only BEFORE UPDATE OR DELETE ON message_payloads
    FOR EACH ROW EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER message_payloads_no_truncate BEFORE TRUNCATE ON message_payloads
    FOR EACH STATEMENT EXECUTE FUNCTION custodian_refuse_change();
