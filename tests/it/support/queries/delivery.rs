//! The retry schedule (deferred retries) and the records of HTTP
//! deliveries.

use super::Db;

impl Db<'_> {
    /// `retry_schedule` entries whose lease is held now.
    pub fn leased_entries(&self) -> i64 {
        self.count("SELECT count(*) AS n FROM retry_schedule WHERE leased_until > now()")
    }

    /// `retry_schedule` entries with no lease and due now.
    pub fn due_unleased_entries(&self) -> i64 {
        self.count(
            "SELECT count(*) AS n FROM retry_schedule \
              WHERE leased_until IS NULL AND next_attempt_at <= now()",
        )
    }

    /// The one `retry_schedule` entry's lease end, in Unix milliseconds.
    pub fn lease_end_ms(&self) -> i64 {
        self.count(
            "SELECT (EXTRACT(EPOCH FROM leased_until) * 1000)::int8 AS n FROM retry_schedule",
        )
    }

    /// The one `retry_schedule` entry's attempts.
    pub fn scheduled_attempts(&self) -> i64 {
        self.count("SELECT attempts::int8 AS n FROM retry_schedule")
    }

    /// The one HTTP delivery record's end, in Unix milliseconds.
    pub fn delivery_finished_ms(&self) -> i64 {
        self.count(
            "SELECT (EXTRACT(EPOCH FROM finished_at) * 1000)::int8 AS n FROM http_deliveries",
        )
    }
}
