//! The built-in settings: every key's default, the base layer under the
//! TOML file and the `CUSTODIAN_` environment.

use super::{audit, flow, formats, masking, operators, relay, telemetry};
use crate::handlers::registry::{HandlerKind, TEXT_MESSAGE_TYPE};

/// The defaults: everything on localhost, as `dev/run` starts it.
pub(super) fn defaults() -> serde_json::Value {
    serde_json::json!({
        "kafka": {
            "brokers": "localhost:9092",
            "group_id": "custodian",
            "topics": ["transactions"],
            "auto_offset_reset": "earliest",
            "prefetch_kbytes_per_partition": 2048,
            "commit_interval": "1s",
            "session_timeout": "10s",
            "extra": {},
        },
        "postgres": {
            "url": "postgres://postgres@localhost:5432/custodian",
            "pool_size": 8,
            "connect_timeout": "5s",
            "statement_timeout": "30s",
        },
        "redis": {
            "url": "redis://127.0.0.1:6379",
            "pool_size": 4,
            "connect_timeout": "5s",
            "response_timeout": "10s",
        },
        "pipeline": {
            "enrichers": 2,
            "processors": 3,
            "auditors": 2,
            "mailbox_capacity": 16,
            "partition_batch_size": 1000,
            "max_in_flight_per_partition": 5000,
            "max_in_flight_bytes_per_partition": 8388608,
            "audit_batch_size": 4000,
            "audit_flush_interval": "20ms",
            "dependency_backoff_min": "100ms",
            "dependency_backoff_max": "5s",
        },
        "retry": {
            "max_attempts": 3,
            "backoff_min": "200ms",
            "backoff_max": "5s",
        },
        "deliveries": {
            "retention": "7d",
        },
        "routes": [
            {
                "event_types": HandlerKind::Transactions.spec().event_types,
                "handler": HandlerKind::Transactions,
            },
            {
                "event_types": HandlerKind::Domain.spec().event_types,
                "handler": HandlerKind::Domain,
            },
            {
                "event_types": [TEXT_MESSAGE_TYPE],
                "handler": HandlerKind::Audit,
            },
        ],
        "dlq": {
            "key_prefix": "dlq",
            "replay_rate_per_second": 100,
            "replay_max_batch": 10000,
        },
        "http": { "bind": "127.0.0.1:8080", "workers": 1, "body_timeout": "10s" },
        "runtime": { "arbiter_threads": 2, "drain_timeout": "30s" },
        "log": { "level": "info", "format": "auto" },
        "audit": audit::defaults(),
        "relay": relay::defaults(),
        "masking": masking::defaults(),
        "operators": operators::defaults(),
        "schema_registry": formats::registry_defaults(),
        "formats": [],
        "flow": flow::defaults(),
        "breaker": flow::breaker_defaults(),
        "telemetry": telemetry::defaults(),
    })
}
