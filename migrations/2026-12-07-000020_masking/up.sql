-- Issue 27, part 5: masking personal data. Unmasking one message (an
-- approver's `POST /messages/{id}/unmask`) is a chained operator entry,
-- MESSAGE_UNMASKED, saying who, which message, why and which fields.
SELECT custodian_audit_statuses(ARRAY[
    'MESSAGE_PROCESSED', 'MESSAGE_FAILED', 'MESSAGE_DLQ',
    'MESSAGE_DUPLICATE', 'MESSAGE_REPLAYED', 'MESSAGE_DISCARDED',
    'MESSAGE_PUBLISHED', 'MESSAGE_RETRY_SCHEDULED',
    'MESSAGE_ERASED', 'AUDIT_HOLD', 'AUDIT_HOLD_RELEASED', 'ARCHIVE_DELETED',
    'OPERATOR_ADDED', 'OPERATOR_ROTATED', 'OPERATOR_REVOKED',
    'REQUEST_CREATED', 'REQUEST_APPROVED', 'REQUEST_REJECTED', 'REQUEST_EXPIRED',
    'MESSAGE_UNMASKED']);
