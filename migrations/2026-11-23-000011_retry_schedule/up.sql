-- The durable retry schedule of `retry = "deferred"` routes (see
-- src/schedule). A message whose delivery failed transiently waits here
-- instead of holding its partition; later messages with the same key on the
-- same route wait behind it, in order (ascending `id`). A row exists only
-- while its message is open: completing it (processed or dead-lettered)
-- deletes it in the same transaction as its terminal audit entry, so every
-- row is an open entry and the key index stays small.
CREATE TABLE retry_schedule (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id      UUID        NOT NULL UNIQUE,
    -- The http route's position in `routes` (among http routes) and its
    -- label (scheme://host[:port]) for metrics and listings.
    route           INTEGER     NOT NULL,
    route_label     TEXT        NOT NULL,
    -- The record's key, byte for byte; NULL keys never wait for each other.
    message_key     BYTEA,
    topic           TEXT        NOT NULL,
    kafka_partition INTEGER     NOT NULL,
    kafka_offset    BIGINT      NOT NULL,
    event_type      TEXT,
    consumer_group  TEXT        NOT NULL,
    -- Attempts made so far (0 for a message that waited behind its key
    -- without being tried).
    attempts        INTEGER     NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error      TEXT,
    -- Set while a worker attempts it; an expired lease (a crashed worker)
    -- makes the entry claimable again.
    leased_until    TIMESTAMPTZ,
    -- `POST /replay/{id}` asks for one attempt now, whatever the backoff.
    scheduled_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The processor's check "does this key have open entries?" and the
-- worker's "is this entry its key's head?". A hash index: keys come from
-- producers and may be larger than a B-tree entry can hold (~2.7 kB), and
-- these lookups only ever ask for equality.
CREATE INDEX retry_schedule_by_key ON retry_schedule USING hash (message_key);
-- The worker's scan for due entries.
CREATE INDEX retry_schedule_due ON retry_schedule (next_attempt_at);

ALTER TABLE audit_log DROP CONSTRAINT audit_log_status_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_status_check CHECK (status IN (
    'MESSAGE_PROCESSED', 'MESSAGE_FAILED', 'MESSAGE_DLQ',
    'MESSAGE_DUPLICATE', 'MESSAGE_REPLAYED', 'MESSAGE_DISCARDED',
    'MESSAGE_PUBLISHED', 'MESSAGE_RETRY_SCHEDULED')) NOT VALID;
ALTER TABLE audit_log VALIDATE CONSTRAINT audit_log_status_check;

-- Working state, like the projections: the audit role keeps full row rights.
GRANT SELECT, INSERT, UPDATE, DELETE ON retry_schedule TO custodian_audit_writer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO custodian_audit_writer;
