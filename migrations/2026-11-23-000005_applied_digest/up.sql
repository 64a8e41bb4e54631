-- What an id was applied with: a later record claiming an applied id with
-- other bytes is an id conflict (dead-lettered), not a duplicate. NULL on
-- rows applied before this column existed.
ALTER TABLE applied_messages ADD COLUMN payload_sha256 BYTEA;
