-- The transactional outbox (Debezium's outbox event router has the same
-- columns: id, aggregatetype, aggregateid, type, payload). An application
-- inserts its event here in the same transaction as its business change;
-- `custodian relay` publishes it to Kafka later and marks it published.
--
-- `id` orders events: an aggregate's events are published in id order.
-- `event_id` is the message id: it travels in the (signed)
-- `custodian-message-id` header, so a republished copy is recognised
-- downstream. An application may set it, or take the default.
CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        UUID        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    aggregate_type  TEXT        NOT NULL,
    -- The Kafka key: one aggregate's events share a partition.
    aggregate_id    TEXT        NOT NULL,
    event_type      TEXT        NOT NULL,
    topic           TEXT        NOT NULL CHECK (topic <> ''),
    -- NULL publishes a tombstone.
    payload         BYTEA,
    -- Extra record headers: {"name": "text value", …}.
    headers         JSONB       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(headers) = 'object'),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set by the relay once Kafka acknowledged the record (acks=all).
    published_at    TIMESTAMPTZ,
    kafka_partition INTEGER,
    kafka_offset    BIGINT,
    -- Publish attempts, and the last refusal (the event's own fault: too
    -- large, unknown topic…); an outage is not counted against the event.
    attempts        INTEGER     NOT NULL DEFAULT 0,
    last_error      TEXT,
    -- A refused event (and so its aggregate) is retried from this time.
    next_attempt_at TIMESTAMPTZ
);
-- What the relay reads: the pending rows, in id order and per aggregate.
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_pending_by_aggregate ON outbox (aggregate_type, aggregate_id, id)
    WHERE published_at IS NULL;

-- Each published event is audited MESSAGE_PUBLISHED (topic, partition,
-- offset), so one id can be followed from the outbox to its outcome. The new
-- check allows more than the old one, so existing rows need no rewrite: add
-- it unvalidated (brief lock), then validate (no write lock).
ALTER TABLE audit_log DROP CONSTRAINT audit_log_status_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_status_check CHECK (status IN (
    'MESSAGE_PROCESSED', 'MESSAGE_FAILED', 'MESSAGE_DLQ',
    'MESSAGE_DUPLICATE', 'MESSAGE_REPLAYED', 'MESSAGE_DISCARDED',
    'MESSAGE_PUBLISHED')) NOT VALID;
ALTER TABLE audit_log VALIDATE CONSTRAINT audit_log_status_check;

-- The restricted role of 000007 runs the relay as well: to it the outbox is
-- an ordinary table (its MESSAGE_PUBLISHED rows go to audit_log, which it
-- may only append to).
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox TO custodian_audit_writer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO custodian_audit_writer;
