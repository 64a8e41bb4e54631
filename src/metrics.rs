//! The metric set, defined in one place so names and labels stay consistent.
//! Label values are bounded: topics, partitions, stages and failure kinds,
//! never message ids or free text.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Records read from Kafka.
    pub consumed: IntCounterVec,
    /// Records applied, by topic and event type.
    pub processed: IntCounterVec,
    /// Records that failed, by topic, stage and kind.
    pub failed: IntCounterVec,
    /// Records skipped because their id was already applied.
    pub duplicates: IntCounterVec,
    /// Records parked in the dead-letter queue (seed 004's name).
    pub dlq: IntCounterVec,
    /// Entries in each topic's dead-letter list (read from Redis at scrape).
    pub dlq_depth: IntGaugeVec,
    /// Open entries of the retry schedule, by route (refreshed by the retry worker).
    pub retry_schedule_depth: IntGaugeVec,
    /// How long the oldest due schedule entry has been due, by route.
    pub retry_schedule_oldest_due_seconds: prometheus::GaugeVec,
    /// HTTP deliveries under way, by route.
    pub deliveries_in_flight: IntGaugeVec,
    /// Transient failures retried in place, by topic, stage and kind.
    pub retries: IntCounterVec,
    /// Operator replays and discards, by topic and result.
    pub replays: IntCounterVec,
    /// Events published by `POST /produce` (seed 004's producer metric).
    pub produced: IntCounterVec,
    /// HTTP deliveries by route and outcome.
    pub downstream_requests: IntCounterVec,
    /// Seconds per HTTP delivery attempt, by route.
    pub downstream_seconds: HistogramVec,
    /// Deliveries that waited for the route's rate limit.
    pub rate_limit_waits: IntCounterVec,
    /// Messages between the committed offset and the partition's end, from
    /// librdkafka's statistics.
    pub consumer_lag: IntGaugeVec,
    /// Seconds per PostgreSQL write, by operation (seed 004's name).
    pub db_latency_seconds: HistogramVec,
    /// HTTP requests served, by method, route pattern and status.
    pub http_requests: IntCounterVec,
    /// Seconds per HTTP request served, by method and route pattern.
    pub http_latency_seconds: HistogramVec,
    /// Messages per audit flush.
    pub audit_batch_size: Histogram,
    /// Seconds per audit flush (one PostgreSQL transaction).
    pub audit_flush_seconds: Histogram,
    /// Records between read and durable outcome, per partition.
    pub in_flight: IntGaugeVec,
    /// Times a stage waited for an unreachable dependency.
    pub dependency_waits: IntCounterVec,
    /// Offsets stored for commit (the durable watermark), per partition.
    pub committed_offset: IntGaugeVec,
    /// Messages whose audit rows are committed.
    pub audited: IntCounter,
    /// Seconds from the record's Kafka timestamp to its durable audit.
    pub end_to_end_seconds: Histogram,
    /// Seconds from the partition actor reading the record to its outcome
    /// being durable: custodian's own share of the end-to-end latency.
    pub pipeline_seconds: Histogram,
    /// Outbox rows not yet published (set by the relay that leads).
    pub outbox_pending: IntGauge,
    /// Age of the oldest unpublished outbox row (0 when none).
    pub outbox_oldest_pending_seconds: Gauge,
    /// Outbox events published and marked, by topic.
    pub outbox_published: IntCounterVec,
    /// Outbox events Kafka refused (their aggregate waits), by topic.
    pub outbox_refused: IntCounterVec,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
    registry
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("static metric definition");
    registry
        .register(Box::new(h.clone()))
        .expect("metric registered once");
    h
}

/// Latency buckets from 1 ms to about 16 s.
fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help)
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 15).expect("static buckets")),
        labels,
    )
    .expect("static metric definition");
    registry
        .register(Box::new(h.clone()))
        .expect("metric registered once");
    h
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        Metrics {
            consumed: counter(
                &r,
                "messages_consumed_total",
                "Records read from Kafka.",
                &["topic"],
            ),
            processed: counter(
                &r,
                "messages_processed_total",
                "Records applied.",
                &["topic", "type"],
            ),
            failed: counter(
                &r,
                "messages_failed_total",
                "Records that failed.",
                &["topic", "stage", "kind"],
            ),
            duplicates: counter(
                &r,
                "duplicates_total",
                "Records skipped as already applied.",
                &["topic"],
            ),
            dlq: counter(
                &r,
                "dlq_count_total",
                "Records parked in the dead-letter queue.",
                &["topic"],
            ),
            dlq_depth: gauge(
                &r,
                "dlq_depth",
                "Entries in the topic's dead-letter list.",
                &["topic"],
            ),
            retry_schedule_depth: gauge(
                &r,
                "retry_schedule_depth",
                "Open entries of the retry schedule.",
                &["route"],
            ),
            retry_schedule_oldest_due_seconds: register(
                &r,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "retry_schedule_oldest_due_seconds",
                        "How long the oldest due retry schedule entry has been due.",
                    ),
                    &["route"],
                )
                .expect("static metric definition"),
            ),
            deliveries_in_flight: gauge(
                &r,
                "deliveries_in_flight",
                "HTTP deliveries under way.",
                &["route"],
            ),
            retries: counter(
                &r,
                "retries_total",
                "Transient failures retried in place.",
                &["topic", "stage", "kind"],
            ),
            replays: counter(
                &r,
                "replays_total",
                "Dead letters replayed or discarded by an operator.",
                &["topic", "result"],
            ),
            produced: counter(
                &r,
                "events_produced_total",
                "Events published through POST /produce.",
                &["topic", "type"],
            ),
            downstream_requests: counter(
                &r,
                "downstream_requests_total",
                "HTTP deliveries by route and outcome.",
                &["route", "outcome"],
            ),
            downstream_seconds: histogram_vec(
                &r,
                "downstream_latency_seconds",
                "Seconds per HTTP delivery attempt.",
                &["route"],
            ),
            consumer_lag: gauge(
                &r,
                "consumer_lag_messages",
                "Messages between the committed offset and the end of the partition.",
                &["topic", "partition"],
            ),
            db_latency_seconds: histogram_vec(
                &r,
                "db_latency_seconds",
                "Seconds per PostgreSQL write.",
                &["operation"],
            ),
            http_requests: counter(
                &r,
                "http_requests_total",
                "HTTP requests served.",
                &["method", "route", "status"],
            ),
            http_latency_seconds: histogram_vec(
                &r,
                "http_latency_seconds",
                "Seconds per HTTP request served.",
                &["method", "route"],
            ),
            rate_limit_waits: counter(
                &r,
                "rate_limit_waits_total",
                "Deliveries that waited for their route's rate limit.",
                &["route"],
            ),
            audit_batch_size: histogram(
                &r,
                "audit_batch_size",
                "Messages per audit flush.",
                vec![1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0],
            ),
            audit_flush_seconds: histogram(
                &r,
                "audit_flush_seconds",
                "Seconds per audit flush.",
                prometheus::exponential_buckets(0.001, 2.0, 14).expect("static buckets"),
            ),
            in_flight: gauge(
                &r,
                "partition_in_flight_messages",
                "Records between read and durable outcome.",
                &["topic", "partition"],
            ),
            dependency_waits: counter(
                &r,
                "dependency_waits_total",
                "Waits for an unreachable dependency.",
                &["dependency"],
            ),
            committed_offset: gauge(
                &r,
                "partition_stored_offset",
                "Durable watermark stored for commit.",
                &["topic", "partition"],
            ),
            audited: {
                let c = IntCounter::new(
                    "messages_audited_total",
                    "Messages whose audit rows are committed.",
                )
                .expect("static metric definition");
                r.register(Box::new(c.clone()))
                    .expect("metric registered once");
                c
            },
            end_to_end_seconds: histogram(
                &r,
                "end_to_end_latency_seconds",
                "Seconds from Kafka timestamp to durable outcome.",
                prometheus::exponential_buckets(0.0005, 1.25, 60).expect("static buckets"),
            ),
            pipeline_seconds: histogram(
                &r,
                "pipeline_latency_seconds",
                "Seconds from the partition actor reading a record to its durable outcome (time waiting in Kafka excluded).",
                prometheus::exponential_buckets(0.0005, 1.25, 60).expect("static buckets"),
            ),
            outbox_pending: register(
                &r,
                IntGauge::new("outbox_pending", "Outbox rows not yet published.")
                    .expect("static metric definition"),
            ),
            outbox_oldest_pending_seconds: register(
                &r,
                Gauge::new(
                    "outbox_oldest_pending_seconds",
                    "Age of the oldest unpublished outbox row.",
                )
                .expect("static metric definition"),
            ),
            outbox_published: counter(
                &r,
                "outbox_published_total",
                "Outbox events published to Kafka and marked.",
                &["topic"],
            ),
            outbox_refused: counter(
                &r,
                "outbox_refused_total",
                "Outbox events Kafka refused; their aggregate waits and retries.",
                &["topic"],
            ),
            registry: r,
        }
    }

    /// Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// The bounded label for an event type: known types, else `other`.
    pub fn type_label(event_type: Option<&str>) -> &'static str {
        crate::handlers::transactions::EVENT_TYPES
            .into_iter()
            .find(|t| Some(*t) == event_type)
            .unwrap_or("other")
    }

    /// Drops a revoked partition's series.
    pub fn forget_partition(&self, topic: &str, partition: &str) {
        let _ = self.in_flight.remove_label_values(&[topic, partition]);
        let _ = self
            .committed_offset
            .remove_label_values(&[topic, partition]);
        let _ = self.consumer_lag.remove_label_values(&[topic, partition]);
    }
}

/// The process-wide metric set.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
