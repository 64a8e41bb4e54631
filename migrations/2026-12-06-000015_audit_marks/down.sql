GRANT INSERT ON message_audit_v1, message_payloads_v1 TO custodian_audit_writer;
DROP INDEX audit_log_unchained;
DROP TABLE audit_legacy_frozen;
DROP TABLE audit_chain_marks;
