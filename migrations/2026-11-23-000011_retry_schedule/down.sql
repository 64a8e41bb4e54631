DROP TABLE retry_schedule;
-- Audit rows are never deleted: MESSAGE_RETRY_SCHEDULED rows stay, so the
-- old check comes back unvalidated.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_status_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_status_check CHECK (status IN (
    'MESSAGE_PROCESSED', 'MESSAGE_FAILED', 'MESSAGE_DLQ',
    'MESSAGE_DUPLICATE', 'MESSAGE_REPLAYED', 'MESSAGE_DISCARDED',
    'MESSAGE_PUBLISHED')) NOT VALID;
