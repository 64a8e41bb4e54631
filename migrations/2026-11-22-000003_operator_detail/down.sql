ALTER TABLE message_audit DROP COLUMN detail;
