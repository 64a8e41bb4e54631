-- Replay jobs have owners and can be interrupted and resumed (the jobs
-- themselves live in Redis, see src/dlq/jobs.rs). A job's MESSAGE_REPLAYED
-- rows name it in `detail.job_id`: when a job stops, its counts are
-- reconciled with them, and a resumed job skips the messages they name, so
-- no message is replayed twice by one job. This index finds a job's rows
-- without walking every operator entry; it holds only rows written by a
-- job, so the audit COPY of processed messages does not pay for it.
CREATE INDEX audit_log_by_replay_job ON audit_log ((detail->>'job_id'))
    WHERE status = 'MESSAGE_REPLAYED' AND detail->>'job_id' IS NOT NULL;
