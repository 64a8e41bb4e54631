-- Issue 27, part 4: four-eyes approval. A bulk replay over
-- operators.four_eyes_threshold entries, or any erasure, is first a pending
-- request; a second person with the approver role approves or rejects it,
-- or it expires. Each step is a chained operator entry (REQUEST_CREATED,
-- REQUEST_APPROVED, REQUEST_REJECTED, REQUEST_EXPIRED); this table is the
-- working state, never deleted. An erasure's key is kept only while the
-- request is pending: deciding it (or its expiry) clears `params`.
CREATE TABLE approval_requests (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            TEXT        NOT NULL CHECK (kind IN ('replay', 'erase')),
    params          JSONB,
    entries         BIGINT      NOT NULL,
    reason          TEXT        NOT NULL,
    requested_by    JSONB       NOT NULL,
    requester       TEXT        NOT NULL,
    state           TEXT        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'approved', 'rejected', 'expired')),
    decided_by      JSONB,
    decided_reason  TEXT,
    decided_at      TIMESTAMPTZ,
    outcome         JSONB,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ NOT NULL,
    -- Decided once; the decider is never the requester (by name, whatever
    -- credential either used).
    CHECK ((state = 'pending') = (decided_at IS NULL)),
    CHECK (decided_by IS NULL OR decided_by->>'name' IS DISTINCT FROM requester)
);
CREATE INDEX approval_requests_pending ON approval_requests (expires_at) WHERE state = 'pending';
CREATE TRIGGER approval_requests_never_deleted BEFORE DELETE ON approval_requests
    FOR EACH ROW EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER approval_requests_no_truncate BEFORE TRUNCATE ON approval_requests
    FOR EACH STATEMENT EXECUTE FUNCTION custodian_refuse_change();

SELECT custodian_audit_statuses(ARRAY[
    'MESSAGE_PROCESSED', 'MESSAGE_FAILED', 'MESSAGE_DLQ',
    'MESSAGE_DUPLICATE', 'MESSAGE_REPLAYED', 'MESSAGE_DISCARDED',
    'MESSAGE_PUBLISHED', 'MESSAGE_RETRY_SCHEDULED',
    'MESSAGE_ERASED', 'AUDIT_HOLD', 'AUDIT_HOLD_RELEASED', 'ARCHIVE_DELETED',
    'OPERATOR_ADDED', 'OPERATOR_ROTATED', 'OPERATOR_REVOKED',
    'REQUEST_CREATED', 'REQUEST_APPROVED', 'REQUEST_REJECTED', 'REQUEST_EXPIRED']);

GRANT SELECT, INSERT, UPDATE ON approval_requests TO custodian_audit_writer;
