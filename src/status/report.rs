//! The `/status` document: every owned partition with its offsets and lag,
//! and the health of Kafka, PostgreSQL and Redis. Built by the HTTP handler,
//! read back by `custodian status`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::lag::lag;
use super::registry::{LastError, Registry, State};

/// One dependency's health.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dependency {
    pub ok: bool,
    /// Why not, when not.
    pub error: Option<String>,
}

impl Dependency {
    pub fn from<E: std::fmt::Display>(result: Result<(), E>) -> Self {
        match result {
            Ok(()) => Dependency {
                ok: true,
                error: None,
            },
            Err(e) => Dependency {
                ok: false,
                error: Some(e.to_string()),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dependencies {
    pub kafka: Dependency,
    pub postgres: Dependency,
    pub redis: Dependency,
}

/// One partition, as `kafka-consumer-groups --describe` would show it, plus
/// what only custodian knows.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartitionRow {
    pub topic: String,
    pub partition: i32,
    /// The instance that owns it (`host/pid`).
    pub owner: String,
    /// `running`, `paused` (waiting for in-flight outcomes: a dependency),
    /// `held` (an operator's pause: see `held_by`) or `draining`.
    pub state: String,
    /// While an operator's pause holds it: who paused it and why.
    #[serde(default)]
    pub held_by: Option<String>,
    /// While its oldest in-flight message has waited longer than
    /// `flow.stall_after` (head-of-line blocking): that message.
    #[serde(default)]
    pub stalled: Option<super::registry::Stall>,
    /// The group's committed offset (from Kafka), if any.
    pub committed_offset: Option<i64>,
    /// Every record below it has a durable outcome (not yet necessarily
    /// committed).
    pub durable_watermark: Option<i64>,
    /// The partition's end (the next offset to be written), from Kafka.
    pub high_watermark: Option<i64>,
    /// `high_watermark - committed_offset` (or minus the durable watermark
    /// before the first commit): [`lag`].
    pub lag: Option<i64>,
    pub in_flight: u64,
    pub last_error: Option<ErrorRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorRow {
    pub at: DateTime<Utc>,
    pub message: String,
}

impl From<LastError> for ErrorRow {
    fn from(e: LastError) -> Self {
        ErrorRow {
            at: e.at,
            message: e.message,
        }
    }
}

/// One http route's gate on this instance.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RouteRow {
    /// The route's label (its URL without credentials or query).
    pub route: String,
    /// While an operator's pause holds it: who paused it and why.
    pub paused_by: Option<String>,
    /// Its circuit breaker (none: off, by `breaker.enabled` or the route's
    /// own `breaker.enabled`).
    pub breaker: Option<BreakerRow>,
}

/// A route's circuit breaker on this instance.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BreakerRow {
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// Seconds in this state.
    pub for_seconds: f64,
    pub consecutive_failures: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusReport {
    pub instance: String,
    pub generated_at: DateTime<Utc>,
    /// Partitions this instance owns; `null` before its first assignment.
    pub assigned_partitions: Option<usize>,
    pub health: Dependencies,
    pub partitions: Vec<PartitionRow>,
    /// Each http route's gate: an operator's pause, its circuit breaker.
    #[serde(default)]
    pub routes: Vec<RouteRow>,
}

/// What Kafka said about the owned partitions.
struct KafkaView {
    committed: Vec<Option<i64>>,
    high: Vec<Option<i64>>,
    error: Option<String>,
}

/// Committed offsets and high watermarks from the broker (blocking calls,
/// each bounded by `deadline`; run it on a blocking thread).
fn ask_kafka(registry: &Registry, keys: &[(String, i32)], deadline: Duration) -> KafkaView {
    let mut view = KafkaView {
        committed: vec![None; keys.len()],
        high: vec![None; keys.len()],
        error: None,
    };
    let Some(consumer) = registry.consumer() else {
        view.error = Some("the consumer is closed".into());
        return view;
    };
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in keys {
        tpl.add_partition(topic, *partition);
    }
    if !keys.is_empty() {
        match consumer.committed_offsets(tpl, deadline) {
            Ok(committed) => {
                for (i, (topic, partition)) in keys.iter().enumerate() {
                    if let Some(Offset::Offset(o)) = committed
                        .find_partition(topic, *partition)
                        .map(|e| e.offset())
                    {
                        view.committed[i] = Some(o);
                    }
                }
            }
            Err(e) => view.error = Some(format!("committed offsets: {e}")),
        }
    }
    for (i, (topic, partition)) in keys.iter().enumerate() {
        match consumer.fetch_watermarks(topic, *partition, deadline) {
            Ok((_, high)) => view.high[i] = Some(high),
            Err(e) => {
                // The broker is not answering: one wait is enough to say so.
                view.error = Some(format!("watermarks of {topic}/{partition}: {e}"));
                break;
            }
        }
    }
    view
}

/// The partition rows, asking Kafka for the offsets (on a blocking thread).
/// The Kafka health is that of those calls.
pub async fn partitions(
    registry: std::sync::Arc<Registry>,
    deadline: Duration,
) -> (Vec<PartitionRow>, Dependency) {
    let snapshot = registry.snapshot();
    let keys: Vec<(String, i32)> = snapshot.iter().map(|(k, _)| k.clone()).collect();
    let asked = {
        let (registry, keys) = (std::sync::Arc::clone(&registry), keys.clone());
        tokio::task::spawn_blocking(move || ask_kafka(&registry, &keys, deadline)).await
    };
    let view = asked.unwrap_or_else(|e| KafkaView {
        committed: vec![None; keys.len()],
        high: vec![None; keys.len()],
        error: Some(format!("kafka query failed: {e}")),
    });
    let rows = snapshot
        .into_iter()
        .enumerate()
        .map(|(i, ((topic, partition), cell))| {
            let committed = view.committed[i];
            let durable = cell.watermark();
            let high = view.high[i];
            PartitionRow {
                topic,
                partition,
                owner: registry.instance().to_owned(),
                state: state_name(cell.state()).to_owned(),
                committed_offset: committed,
                durable_watermark: durable,
                high_watermark: high,
                lag: lag(high, committed, durable),
                in_flight: cell.in_flight(),
                held_by: cell.held(),
                stalled: cell.stalled(),
                last_error: cell.last_error().map(ErrorRow::from),
            }
        })
        .collect();
    let health = Dependency {
        ok: view.error.is_none(),
        error: view.error,
    };
    (rows, health)
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Running => "running",
        State::Paused => "paused",
        State::Draining => "draining",
        State::Held => "held",
    }
}
