DROP INDEX audit_log_by_status;
CREATE INDEX audit_log_by_status ON audit_log (status, occurred_at, id);
CREATE INDEX audit_log_by_partition ON audit_log (topic, kafka_partition, occurred_at, id);
