DROP INDEX audit_log_by_offset;
DROP INDEX audit_log_by_partition;
DROP INDEX audit_log_by_event_type;
DROP INDEX audit_log_by_status;
DROP INDEX audit_log_by_key;
DROP INDEX audit_log_by_time;
