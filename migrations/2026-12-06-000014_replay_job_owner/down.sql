DROP INDEX audit_log_by_replay_job;
