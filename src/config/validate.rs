//! Checking the settings at start: what the types alone cannot say, each
//! refusal naming the key. One function per concern; [`Settings::validate`]
//! runs them in order.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::{invalid, urls, ConfigError, Settings};

impl Settings {
    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.kafka_settings()?;
        self.connections()?;
        self.sizes()?;
        self.backoffs()?;
        for (index, route) in self.routes.iter().enumerate() {
            route.validate(index, &self.kafka.topics)?;
        }
        self.names_and_secrets()?;
        self.durations()?;
        if !matches!(self.log.format.as_str(), "auto" | "json" | "plain") {
            return Err(invalid("log.format", "must be `auto`, `json` or `plain`"));
        }
        self.audit.validate()?;
        self.operators.validate()?;
        self.flow.validate()?;
        self.breaker.validate()?;
        for (index, route) in self.routes.iter().enumerate() {
            if route.breaker.is_some() {
                self.breaker
                    .for_route(route.breaker.as_ref())
                    .validate_at(&format!("routes[{index}].breaker"))?;
            }
        }
        self.telemetry.validate()?;
        super::formats::validate_formats(&self.formats, &self.kafka.topics)?;
        self.schema_registry.validate(&self.formats)?;
        self.relay.validate(self.schema_registry.url.is_some())?;
        self.masking.validate(&self.kafka.topics, &self.routes)
    }

    /// Brokers, group, topics and where a new group starts.
    fn kafka_settings(&self) -> Result<(), ConfigError> {
        urls::kafka_brokers(&self.kafka.brokers)?;
        if self.kafka.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", "must not be empty"));
        }
        if self.kafka.topics.is_empty() || self.kafka.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid(
                "kafka.topics",
                "must list at least one non-empty topic",
            ));
        }
        if !matches!(self.kafka.auto_offset_reset.as_str(), "earliest" | "latest") {
            return Err(invalid(
                "kafka.auto_offset_reset",
                format!(
                    "must be `earliest` or `latest`, not `{}`",
                    self.kafka.auto_offset_reset
                ),
            ));
        }
        Ok(())
    }

    /// The PostgreSQL and Redis URLs (secrets: errors never echo them).
    fn connections(&self) -> Result<(), ConfigError> {
        urls::postgres(self.postgres.url.expose_secret())?;
        urls::redis(self.redis.url.expose_secret())?;
        Ok(())
    }

    /// Pool sizes, actor counts, batch and in-flight limits: all above zero.
    fn sizes(&self) -> Result<(), ConfigError> {
        let positive = [
            ("postgres.pool_size", self.postgres.pool_size as usize),
            ("redis.pool_size", self.redis.pool_size as usize),
            ("pipeline.enrichers", self.pipeline.enrichers),
            ("pipeline.processors", self.pipeline.processors),
            ("pipeline.auditors", self.pipeline.auditors),
            ("pipeline.mailbox_capacity", self.pipeline.mailbox_capacity),
            (
                "pipeline.partition_batch_size",
                self.pipeline.partition_batch_size,
            ),
            (
                "pipeline.max_in_flight_per_partition",
                self.pipeline.max_in_flight_per_partition,
            ),
            (
                "pipeline.max_in_flight_bytes_per_partition",
                self.pipeline.max_in_flight_bytes_per_partition,
            ),
            ("pipeline.audit_batch_size", self.pipeline.audit_batch_size),
            (
                "kafka.prefetch_kbytes_per_partition",
                self.kafka.prefetch_kbytes_per_partition,
            ),
            ("http.workers", self.http.workers),
            ("retry.max_attempts", self.retry.max_attempts as usize),
            (
                "dlq.replay_rate_per_second",
                self.dlq.replay_rate_per_second as usize,
            ),
            ("dlq.replay_max_batch", self.dlq.replay_max_batch),
            ("runtime.arbiter_threads", self.runtime.arbiter_threads),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(invalid(key, "must be greater than zero"));
            }
        }
        if self.pipeline.max_in_flight_per_partition < self.pipeline.partition_batch_size {
            return Err(invalid(
                "pipeline.max_in_flight_per_partition",
                "must be at least pipeline.partition_batch_size",
            ));
        }
        Ok(())
    }

    /// Each backoff's minimum is not above its maximum.
    fn backoffs(&self) -> Result<(), ConfigError> {
        if self.pipeline.dependency_backoff_min > self.pipeline.dependency_backoff_max {
            return Err(invalid(
                "pipeline.dependency_backoff_min",
                "must not exceed pipeline.dependency_backoff_max",
            ));
        }
        if self.retry.backoff_min > self.retry.backoff_max {
            return Err(invalid(
                "retry.backoff_min",
                "must not exceed retry.backoff_max",
            ));
        }
        Ok(())
    }

    /// The DLQ key prefix, the header key, the API token and the bind address.
    fn names_and_secrets(&self) -> Result<(), ConfigError> {
        if self.dlq.key_prefix.is_empty()
            || !self
                .dlq
                .key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
        {
            return Err(invalid(
                "dlq.key_prefix",
                "must be non-empty ASCII letters, digits, '.', '_', '-' or ':'",
            ));
        }
        if let Some(key) = &self.kafka.header_key {
            // A secret: say what is wrong, never what it is.
            if key.expose_secret().len() < 32 {
                return Err(invalid(
                    "kafka.header_key",
                    "must be at least 32 bytes (or unset for a per-process random key)",
                ));
            }
        }
        if let Some(token) = &self.http.api_token {
            // The value is a secret: say what is wrong, never what it is.
            let token = token.expose_secret();
            if token.len() < 16 || token.trim() != token || token.contains(char::is_whitespace) {
                return Err(invalid(
                    "http.api_token",
                    "must be at least 16 characters without whitespace (or unset to close the API)",
                ));
            }
        }
        if self.http.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "http.bind",
                format!(
                    "`{}` is not a socket address like 0.0.0.0:8080",
                    self.http.bind
                ),
            ));
        }
        Ok(())
    }

    /// Timeouts and intervals: more than zero, at most a day.
    fn durations(&self) -> Result<(), ConfigError> {
        let day = Duration::from_secs(86_400);
        for (key, value) in [
            ("kafka.commit_interval", self.kafka.commit_interval),
            ("kafka.session_timeout", self.kafka.session_timeout),
            ("postgres.connect_timeout", self.postgres.connect_timeout),
            ("redis.connect_timeout", self.redis.connect_timeout),
            ("redis.response_timeout", self.redis.response_timeout),
            (
                "postgres.statement_timeout",
                self.postgres.statement_timeout,
            ),
            ("retry.backoff_min", self.retry.backoff_min),
            (
                "pipeline.audit_flush_interval",
                self.pipeline.audit_flush_interval,
            ),
            (
                "pipeline.dependency_backoff_min",
                self.pipeline.dependency_backoff_min,
            ),
            ("runtime.drain_timeout", self.runtime.drain_timeout),
            ("http.body_timeout", self.http.body_timeout),
        ] {
            if value.is_zero() || value > day {
                return Err(invalid(key, "must be more than zero and at most 24h"));
            }
        }
        let ten_years = Duration::from_secs(3650 * 86_400);
        if self.deliveries.retention.is_zero() || self.deliveries.retention > ten_years {
            return Err(invalid(
                "deliveries.retention",
                "must be more than zero and at most 3650d",
            ));
        }
        Ok(())
    }
}
