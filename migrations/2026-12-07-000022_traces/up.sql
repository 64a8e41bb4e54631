-- Issue 29: traces. With telemetry.otlp_endpoint set, every audit entry of
-- a traced record names its trace in detail->>'trace_id' (inside the
-- hashed entry); the explorer finds a trace's entries by it. An outbox row
-- may carry the W3C traceparent of the transaction that wrote it, which
-- the relay publishes (as the record's `traceparent` header).
CREATE INDEX audit_log_trace_id ON audit_log ((detail->>'trace_id'))
    WHERE detail ? 'trace_id';
ALTER TABLE outbox ADD COLUMN traceparent TEXT
    CHECK (traceparent IS NULL OR traceparent ~ '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$');
