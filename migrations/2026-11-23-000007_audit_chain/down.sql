REVOKE ALL ON ALL TABLES IN SCHEMA public FROM custodian_audit_writer;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM custodian_audit_writer;
REVOKE ALL ON SCHEMA public FROM custodian_audit_writer;
-- The role itself stays: other databases on the server may use it.
DROP TABLE audit_checkpoints;
ALTER TABLE audit_log
    DROP CONSTRAINT audit_log_chain_seq,
    DROP CONSTRAINT audit_log_chained_fully,
    DROP COLUMN chain_id,
    DROP COLUMN chain_seq,
    DROP COLUMN entry_hash;
DROP TABLE audit_chains;
