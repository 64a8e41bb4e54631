-- The record of each http delivery's outcome (`GET /deliveries`, seed 001's
-- `GET /transactions`): the route, how many attempts it took, the last
-- answer, and whether it was delivered or given up (the message is then in
-- the dead-letter queue). One row per message, rewritten when a replay
-- delivers it again. Open deliveries (retrying, waiting behind their key)
-- are the retry schedule's rows; this table holds the finished ones.
--
-- Working state, not evidence: the audit trail (audit_log) is the proof of
-- what happened; this is its operator's summary, written before the
-- ledger row (a delivery) or the dead-letter push (a give-up).
CREATE TABLE http_deliveries (
    message_id      UUID        PRIMARY KEY,
    route_label     TEXT        NOT NULL,
    status          TEXT        NOT NULL CHECK (status IN ('delivered', 'failed')),
    attempts        INTEGER     NOT NULL CHECK (attempts > 0),
    -- The last answer: `HTTP 200` for a delivery, the failure otherwise.
    last_answer     TEXT        NOT NULL,
    message_key     BYTEA,
    topic           TEXT        NOT NULL,
    kafka_partition INTEGER     NOT NULL,
    kafka_offset    BIGINT      NOT NULL,
    event_type      TEXT,
    finished_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Newest first, over every route or one.
CREATE INDEX http_deliveries_recent ON http_deliveries (finished_at DESC);
CREATE INDEX http_deliveries_by_route ON http_deliveries (route_label, finished_at DESC);
CREATE INDEX http_deliveries_by_status ON http_deliveries (status, finished_at DESC);

GRANT SELECT, INSERT, UPDATE, DELETE ON http_deliveries TO custodian_audit_writer;
