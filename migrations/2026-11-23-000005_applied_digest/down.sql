ALTER TABLE applied_messages DROP COLUMN payload_sha256;
