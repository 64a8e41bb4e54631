-- The message explorer (GET /messages): every filter walks an index in the
-- explorer's order, newest first by (occurred_at, id), so a page costs the
-- same on ten million rows as on ten thousand (keyset paging, no OFFSET).
-- audit_log stays append-only: its triggers and grants are untouched.
--
-- Each index costs the audit COPY some write time (see the README's
-- explorer figures); these are the ones a filter needs, no more. A search by
-- message id uses audit_log_by_message (migration 000006).
--
-- Keys and event types come from producers and may be huge (a B-tree entry
-- holds at most ~2.7 kB, and an audit row that cannot be indexed cannot be
-- written): their indexes hold the first 200 characters, and the explorer
-- compares the prefix (to use the index) and then the whole value.
CREATE INDEX audit_log_by_time ON audit_log (occurred_at, id);
CREATE INDEX audit_log_by_key ON audit_log (left(message_key, 200), occurred_at, id)
    WHERE message_key IS NOT NULL;
CREATE INDEX audit_log_by_status ON audit_log (status, occurred_at, id);
CREATE INDEX audit_log_by_event_type ON audit_log (left(event_type, 200), occurred_at, id)
    WHERE event_type IS NOT NULL;
-- A partition, newest first; and an offset range within it, which pages by
-- offset (highest first) so it reads only the range.
CREATE INDEX audit_log_by_partition ON audit_log (topic, kafka_partition, occurred_at, id);
CREATE INDEX audit_log_by_offset ON audit_log (topic, kafka_partition, kafka_offset, id);
