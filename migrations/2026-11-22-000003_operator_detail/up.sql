-- Operator actions (replay, discard) say who did them and why. The detail is
-- part of the append-only row: written once, never changed.
ALTER TABLE message_audit ADD COLUMN detail JSONB;
