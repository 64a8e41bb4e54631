DROP VIEW message_payloads;
DROP VIEW message_audit;
DROP TABLE audit_log;
ALTER INDEX message_audit_v1_by_message RENAME TO message_audit_by_message;
ALTER TABLE message_payloads_v1 RENAME TO message_payloads;
ALTER TABLE message_audit_v1 RENAME TO message_audit;
