-- Issue 29: flow control. An operator's pause of a topic, one partition of
-- a topic, or an http route, kept here so that every instance of the group
-- honours it (each reads the active pauses every flow.poll_interval, and
-- before it reads a partition it was just given), and a restart too. Each
-- pause and resume is a chained operator entry (FLOW_PAUSED, FLOW_RESUMED);
-- a route's circuit breaker records each change of state (BREAKER_OPENED,
-- BREAKER_HALF_OPEN, BREAKER_CLOSED). Rows are never deleted; a pause is
-- resumed once.
CREATE TABLE flow_pauses (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic            TEXT,
    kafka_partition  INTEGER,
    route            TEXT,
    reason           TEXT        NOT NULL CHECK (btrim(reason) <> ''),
    paused_by        JSONB       NOT NULL,
    paused_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    resumed_at       TIMESTAMPTZ,
    resumed_by       JSONB,
    resume_reason    TEXT,
    -- A topic (with or without a partition), or a route: one of them.
    CHECK ((route IS NULL AND topic IS NOT NULL)
        OR (route IS NOT NULL AND topic IS NULL AND kafka_partition IS NULL)),
    CHECK (kafka_partition IS NULL OR kafka_partition >= 0),
    CHECK ((resumed_at IS NULL) = (resumed_by IS NULL))
);
-- One active pause per target.
CREATE UNIQUE INDEX flow_pauses_active
    ON flow_pauses (coalesce(topic, ''), coalesce(kafka_partition, -1), coalesce(route, ''))
    WHERE resumed_at IS NULL;

-- A pause changes once, when it is resumed, and only in its resume fields.
CREATE FUNCTION custodian_flow_pause_resumed_once() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.resumed_at IS NOT NULL
       OR NEW.id IS DISTINCT FROM OLD.id
       OR NEW.topic IS DISTINCT FROM OLD.topic
       OR NEW.kafka_partition IS DISTINCT FROM OLD.kafka_partition
       OR NEW.route IS DISTINCT FROM OLD.route
       OR NEW.reason IS DISTINCT FROM OLD.reason
       OR NEW.paused_by IS DISTINCT FROM OLD.paused_by
       OR NEW.paused_at IS DISTINCT FROM OLD.paused_at THEN
        RAISE EXCEPTION 'flow_pauses: a pause changes only when it is resumed, once'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER flow_pauses_resumed_once BEFORE UPDATE ON flow_pauses
    FOR EACH ROW EXECUTE FUNCTION custodian_flow_pause_resumed_once();
CREATE TRIGGER flow_pauses_never_deleted BEFORE DELETE ON flow_pauses
    FOR EACH ROW EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER flow_pauses_no_truncate BEFORE TRUNCATE ON flow_pauses
    FOR EACH STATEMENT EXECUTE FUNCTION custodian_refuse_change();

SELECT custodian_audit_statuses(ARRAY[
    'MESSAGE_PROCESSED', 'MESSAGE_FAILED', 'MESSAGE_DLQ',
    'MESSAGE_DUPLICATE', 'MESSAGE_REPLAYED', 'MESSAGE_DISCARDED',
    'MESSAGE_PUBLISHED', 'MESSAGE_RETRY_SCHEDULED',
    'MESSAGE_ERASED', 'AUDIT_HOLD', 'AUDIT_HOLD_RELEASED', 'ARCHIVE_DELETED',
    'OPERATOR_ADDED', 'OPERATOR_ROTATED', 'OPERATOR_REVOKED',
    'REQUEST_CREATED', 'REQUEST_APPROVED', 'REQUEST_REJECTED', 'REQUEST_EXPIRED',
    'MESSAGE_UNMASKED',
    'FLOW_PAUSED', 'FLOW_RESUMED',
    'BREAKER_OPENED', 'BREAKER_HALF_OPEN', 'BREAKER_CLOSED']);

GRANT SELECT, INSERT, UPDATE ON flow_pauses TO custodian_audit_writer;
