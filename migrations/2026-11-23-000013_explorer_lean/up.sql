-- Leaner explorer indexes (migration 000010). Each index of audit_log is
-- written by every audit COPY: on `dev/bench` the six of 000010 cost
-- ~25 µs of PostgreSQL CPU per message and a fifth of the throughput (see
-- the README). Two of them go:
--
-- A partition's entries are listed by offset, highest first, from
-- audit_log_by_offset (what a Kafka user reads a partition by): the
-- (topic, partition, time) index is not needed.
DROP INDEX audit_log_by_partition;
-- Nearly every entry is MESSAGE_PROCESSED: the status index keeps the
-- others only (failures, dead letters, duplicates, operator actions),
-- which are what an operator searches by status. A search for processed
-- entries walks the time index, where they are nearly every row.
DROP INDEX audit_log_by_status;
CREATE INDEX audit_log_by_status ON audit_log (status, occurred_at, id)
    WHERE status <> 'MESSAGE_PROCESSED';
