-- Issue 27, part 1: operators with credentials of their own. A token is
-- shown once, when it is made; only its SHA-256 is kept (a token is 32
-- random bytes: its digest cannot be guessed back). Adding, rotating and
-- revoking are chained operator entries (OPERATOR_ADDED, OPERATOR_ROTATED,
-- OPERATOR_REVOKED). A row is never deleted: a revoked operator stays on
-- record, with when.
CREATE TABLE operators (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            TEXT        NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._@-]{1,100}$'),
    role            TEXT        NOT NULL CHECK (role IN ('viewer', 'operator', 'approver', 'admin')),
    token_sha256    BYTEA       NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
    added_by        TEXT        NOT NULL,
    added_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    rotated_at      TIMESTAMPTZ,
    revoked_at      TIMESTAMPTZ
);
CREATE TRIGGER operators_never_deleted BEFORE DELETE ON operators
    FOR EACH ROW EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER operators_no_truncate BEFORE TRUNCATE ON operators
    FOR EACH STATEMENT EXECUTE FUNCTION custodian_refuse_change();

SELECT custodian_audit_statuses(ARRAY[
    'MESSAGE_PROCESSED', 'MESSAGE_FAILED', 'MESSAGE_DLQ',
    'MESSAGE_DUPLICATE', 'MESSAGE_REPLAYED', 'MESSAGE_DISCARDED',
    'MESSAGE_PUBLISHED', 'MESSAGE_RETRY_SCHEDULED',
    'MESSAGE_ERASED', 'AUDIT_HOLD', 'AUDIT_HOLD_RELEASED', 'ARCHIVE_DELETED',
    'OPERATOR_ADDED', 'OPERATOR_ROTATED', 'OPERATOR_REVOKED']);

-- custodian's role reads operators (to authenticate a request); managing
-- them is the CLI's, with the owner's or an admin database credential.
GRANT SELECT ON operators TO custodian_audit_writer;
