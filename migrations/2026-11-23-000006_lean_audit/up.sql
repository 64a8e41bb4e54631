-- A leaner audit trail, written with binary COPY. One row per lifecycle
-- entry, and the receipt of a delivery (when it was read, the original
-- record) rides on that delivery's first entry, so the common case, a
-- message processed at its first attempt, is ONE row instead of three
-- (RECEIVED, PROCESSED and the payload row).
--
-- `message_audit` and `message_payloads` stay as views with the columns they
-- had: `SELECT * FROM message_audit` still lists MESSAGE_RECEIVED, then
-- MESSAGE_PROCESSED (or MESSAGE_FAILED … MESSAGE_DLQ), as the seeds show a
-- lifecycle. Rows written before this migration stay where they were
-- (renamed *_v1, still append-only) and show through the same views.

ALTER TABLE message_audit RENAME TO message_audit_v1;
ALTER TABLE message_payloads RENAME TO message_payloads_v1;
ALTER INDEX message_audit_by_message RENAME TO message_audit_v1_by_message;

CREATE TABLE audit_log (
    id              BIGINT GENERATED ALWAYS AS IDENTITY,
    message_id      UUID        NOT NULL,
    status          TEXT        NOT NULL CHECK (status IN (
                        'MESSAGE_PROCESSED', 'MESSAGE_FAILED', 'MESSAGE_DLQ',
                        'MESSAGE_DUPLICATE', 'MESSAGE_REPLAYED', 'MESSAGE_DISCARDED')),
    topic           TEXT        NOT NULL,
    kafka_partition INTEGER     NOT NULL,
    kafka_offset    BIGINT      NOT NULL,
    message_key     TEXT,
    event_type      TEXT,
    attempt         INTEGER     NOT NULL,
    error           TEXT,
    consumer_group  TEXT        NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Who and why, for operator actions.
    detail          JSONB,
    -- The receipt, on the first entry of each delivery (NULL otherwise).
    received_at     TIMESTAMPTZ,
    -- Steering headers the record carried unsigned (see the README).
    received_detail JSONB,
    key_bytes       BYTEA,
    payload         BYTEA,
    headers         JSONB,
    kafka_timestamp TIMESTAMPTZ,
    payload_sha256  BYTEA,
    CHECK (received_at IS NOT NULL OR (key_bytes IS NULL AND payload IS NULL AND headers IS NULL))
);
-- The one index a lifecycle lookup needs; the table is otherwise only
-- appended to.
CREATE INDEX audit_log_by_message ON audit_log (message_id);

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION custodian_refuse_change();

CREATE VIEW message_audit AS
    SELECT id, message_id, status, topic, kafka_partition, kafka_offset,
           message_key, event_type, attempt, error, consumer_group,
           occurred_at, recorded_at, detail
      FROM message_audit_v1
    UNION ALL
    SELECT id, message_id, 'MESSAGE_RECEIVED', topic, kafka_partition, kafka_offset,
           message_key, event_type, 1, NULL, consumer_group,
           received_at, recorded_at, received_detail
      FROM audit_log WHERE received_at IS NOT NULL
    UNION ALL
    SELECT id, message_id, status, topic, kafka_partition, kafka_offset,
           message_key, event_type, attempt, error, consumer_group,
           occurred_at, recorded_at, detail
      FROM audit_log;

-- The original record, once per message id (its first delivery).
CREATE VIEW message_payloads AS
    SELECT message_id, topic, kafka_partition, kafka_offset, message_key,
           payload, headers, kafka_timestamp, first_seen_at
      FROM message_payloads_v1
    UNION ALL
    (SELECT DISTINCT ON (a.message_id)
           a.message_id, a.topic, a.kafka_partition, a.kafka_offset, a.key_bytes,
           a.payload, a.headers, a.kafka_timestamp, a.recorded_at
      FROM audit_log a
     WHERE a.received_at IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM message_payloads_v1 p WHERE p.message_id = a.message_id)
     ORDER BY a.message_id, a.id);

-- The views are read-only records too: say so in the same words.
CREATE TRIGGER message_audit_read_only INSTEAD OF UPDATE OR DELETE ON message_audit
    FOR EACH ROW EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER message_payloads_read_only INSTEAD OF UPDATE OR DELETE ON message_payloads
    FOR EACH ROW EXECUTE FUNCTION custodian_refuse_change();
