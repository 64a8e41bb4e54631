//! What custodian reports while it works: tracing setup, the [`Emit`] trait
//! and the one metric registry behind `GET /metrics` ([`render`]).
//!
//! Every log line and metric is a small typed event (in the manner of
//! Vector's `internal_events`): code that does the work says
//! `SomeEvent { .. }.emit()`, and the event logs and counts. Each area's
//! file holds its metrics, defined next to the events that move them, so a
//! name and its labels are written once. Label values are bounded: topics,
//! partitions, routes, stages and failure kinds, never message ids or free
//! text. No metric is written outside this module.
//!
//! The areas:
//! - `kafka`: records read, each owned partition's in-flight count,
//!   committed offset and lag.
//! - `pipeline`: messages settled (processed, failed) and waits for an
//!   unreachable dependency.
//! - `retry`: retries in place and the deferred schedule's depth.
//! - `delivery`: http deliveries to downstreams (in flight, outcomes,
//!   latency, rate-limit waits).
//! - `dlq`: dead letters parked, the lists' depth, operator replays and
//!   discards.
//! - `trail`: the audit: durable batches, PostgreSQL write times,
//!   duplicates, end-to-end and pipeline latency.
//! - `flow`: http routes' circuit breakers and stalled partitions.
//! - `outbox`: the relay's backlog and what it published or Kafka refused.
//! - `api`: HTTP requests served and events produced through the API.
//!
//! Tracing: JSON lines for machines, a plain format on a terminal.
//! `RUST_LOG` wins over the configured level. (Cutting long fields for a
//! log line is `crate::text::clip`, a leaf the configuration uses too.)

use std::io::IsTerminal;
use std::sync::OnceLock;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogSettings;

pub(crate) mod api;
pub(crate) mod delivery;
pub(crate) mod dlq;
pub(crate) mod flow;
pub(crate) mod kafka;
pub(crate) mod outbox;
pub(crate) mod pipeline;
pub(crate) mod retry;
pub(crate) mod trail;

/// An event: emitting it logs and counts it.
pub trait Emit {
    fn emit(self);
}

/// Prometheus text exposition of every series (`GET /metrics`).
pub fn render() -> String {
    let mut buffer = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&metrics().registry.gather(), &mut buffer) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// Every area's metrics, registered together on first use: `/metrics` lists
/// the unlabelled series (at zero) from the first scrape on.
struct Metrics {
    registry: Registry,
    api: api::Metrics,
    delivery: delivery::Metrics,
    dlq: dlq::Metrics,
    flow: flow::Metrics,
    kafka: kafka::Metrics,
    outbox: outbox::Metrics,
    pipeline: pipeline::Metrics,
    retry: retry::Metrics,
    trail: trail::Metrics,
}

/// The process-wide metric set (the areas reach their own part of it).
fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let r = Registry::new();
        Metrics {
            api: api::Metrics::register(&r),
            delivery: delivery::Metrics::register(&r),
            dlq: dlq::Metrics::register(&r),
            flow: flow::Metrics::register(&r),
            kafka: kafka::Metrics::register(&r),
            outbox: outbox::Metrics::register(&r),
            pipeline: pipeline::Metrics::register(&r),
            retry: retry::Metrics::register(&r),
            trail: trail::Metrics::register(&r),
            registry: r,
        }
    })
}

/// A metric's definition, written in its area beside the events that move
/// it: the name dashboards and tests look for, its help line, and its label
/// names in the order the events give their values.
struct Def {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

impl Def {
    fn opts(&self) -> Opts {
        Opts::new(self.name, self.help)
    }

    fn counter_vec(&self, r: &Registry) -> IntCounterVec {
        register(r, IntCounterVec::new(self.opts(), self.labels))
    }

    fn gauge_vec(&self, r: &Registry) -> IntGaugeVec {
        register(r, IntGaugeVec::new(self.opts(), self.labels))
    }

    fn float_gauge_vec(&self, r: &Registry) -> GaugeVec {
        register(r, GaugeVec::new(self.opts(), self.labels))
    }

    /// Seconds, in buckets from 1 ms to about 16 s.
    fn latency_vec(&self, r: &Registry) -> HistogramVec {
        let buckets = prometheus::exponential_buckets(0.001, 2.0, 15).expect("static buckets");
        let opts = HistogramOpts::new(self.name, self.help).buckets(buckets);
        register(r, HistogramVec::new(opts, self.labels))
    }

    fn counter(&self, r: &Registry) -> IntCounter {
        debug_assert!(self.labels.is_empty(), "{} has labels", self.name);
        register(r, IntCounter::with_opts(self.opts()))
    }

    fn gauge(&self, r: &Registry) -> IntGauge {
        debug_assert!(self.labels.is_empty(), "{} has labels", self.name);
        register(r, IntGauge::with_opts(self.opts()))
    }

    fn float_gauge(&self, r: &Registry) -> Gauge {
        debug_assert!(self.labels.is_empty(), "{} has labels", self.name);
        register(r, Gauge::with_opts(self.opts()))
    }

    fn histogram(&self, r: &Registry, buckets: Vec<f64>) -> Histogram {
        debug_assert!(self.labels.is_empty(), "{} has labels", self.name);
        let opts = HistogramOpts::new(self.name, self.help).buckets(buckets);
        register(r, Histogram::with_opts(opts))
    }
}

fn register<C: Collector + Clone + 'static>(r: &Registry, made: prometheus::Result<C>) -> C {
    let c = made.expect("static metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

/// The sum of a counter or gauge over all its labels (the console's chart
/// samples read these).
fn total(collector: &dyn Collector) -> f64 {
    collector
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        // A metric is a counter or a gauge; the other part reads zero.
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

/// Installs the global subscriber; a second call (tests) is a no-op. With
/// `tracer` (traces on: `otel`), custodian's spans of the target
/// [`crate::otel::TARGET`] go to it, whatever the log level; the log lines
/// never show them.
pub fn init(settings: &LogSettings, tracer: Option<opentelemetry_sdk::trace::SdkTracer>) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let noise = ClientNoise {
        show: filter.max_level_hint() >= Some(LevelFilter::DEBUG),
    };
    // With traces on, custodian's spans pass whatever the log level.
    let traced = format!("{}=info", crate::otel::TARGET).parse();
    let filter = match (&tracer, traced) {
        (Some(_), Ok(traced)) => filter.add_directive(traced),
        _ => filter,
    };
    let json = match settings.format.as_str() {
        "json" => true,
        "plain" => false,
        _ => !std::io::stdout().is_terminal(),
    };
    let format = fmt::layer()
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal());
    let format = if json {
        format
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed()
    } else {
        format.boxed()
    };
    let Some(tracer) = tracer else {
        // Traces off: no per-layer filter at all (they cost every span).
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(noise)
            .with(format)
            .try_init();
        return;
    };
    // The log lines never show the trace spans; the exporter sees only them.
    let untraced =
        tracing_subscriber::filter::filter_fn(|meta| meta.target() != crate::otel::TARGET);
    let traces = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target(crate::otel::TARGET, Level::INFO),
        );
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(noise)
        .with(format.with_filter(untraced))
        .with(traces)
        .try_init();
}

/// actix-http logs a client's broken request (a malformed header, a
/// connection reset mid-request) as `ERROR stream error: …`, though the
/// client got its 400 and custodian did nothing wrong. Those lines are
/// dropped unless the filter asks for debug output. (tracing cannot lower
/// another crate's level, so when shown they keep actix's label.)
struct ClientNoise {
    /// The filter asks for debug: let them through.
    show: bool,
}

const DISPATCHER: &str = "actix_http::h1::dispatcher";

impl<S: Subscriber> Layer<S> for ClientNoise {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if self.show || *meta.level() != Level::ERROR || meta.target() != DISPATCHER {
            return true;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        !message.0.starts_with("stream error")
    }
}

/// An event's `message` field, as text.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Everything the fmt layer writes, for inspection.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(level: &str) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let filter = EnvFilter::new(level);
        let noise = ClientNoise {
            show: filter.max_level_hint() >= Some(LevelFilter::DEBUG),
        };
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(noise)
            .with(fmt::layer().with_writer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            // What actix-http emits for a malformed header…
            tracing::error!(target: "actix_http::h1::dispatcher", "stream error: {}", "Parse error: invalid Header provided");
            // …and its errors that are not the client's.
            tracing::error!(target: "actix_http::h1::dispatcher", "Internal server error: unexpected eof");
            tracing::error!("custodian's own error");
        });
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        text
    }

    /// Every series by name, type and label names, as dashboards and the
    /// integration tests know them (unchanged since the metrics lived in
    /// one struct, `src/metrics.rs`).
    const SERIES: [(&str, &str, &str); 34] = [
        ("audit_batch_size", "HISTOGRAM", ""),
        ("audit_flush_seconds", "HISTOGRAM", ""),
        ("breaker_changes_total", "COUNTER", "route,to"),
        ("breaker_state", "GAUGE", "route"),
        ("consumer_lag_messages", "GAUGE", "partition,topic"),
        ("db_latency_seconds", "HISTOGRAM", "operation"),
        ("deliveries_in_flight", "GAUGE", "route"),
        ("dependency_waits_total", "COUNTER", "dependency"),
        ("dlq_count_total", "COUNTER", "topic"),
        ("dlq_depth", "GAUGE", "topic"),
        ("downstream_latency_seconds", "HISTOGRAM", "route"),
        ("downstream_requests_total", "COUNTER", "outcome,route"),
        ("duplicates_total", "COUNTER", "topic"),
        ("end_to_end_latency_seconds", "HISTOGRAM", ""),
        ("events_produced_total", "COUNTER", "topic,type"),
        ("http_latency_seconds", "HISTOGRAM", "method,route"),
        ("http_requests_total", "COUNTER", "method,route,status"),
        ("messages_audited_total", "COUNTER", ""),
        ("messages_consumed_total", "COUNTER", "topic"),
        ("messages_failed_total", "COUNTER", "kind,stage,topic"),
        ("messages_processed_total", "COUNTER", "topic,type"),
        ("outbox_oldest_pending_seconds", "GAUGE", ""),
        ("outbox_pending", "GAUGE", ""),
        ("outbox_published_total", "COUNTER", "topic"),
        ("outbox_refused_total", "COUNTER", "topic"),
        ("partition_in_flight_messages", "GAUGE", "partition,topic"),
        ("partition_stalled", "GAUGE", "partition,topic"),
        ("partition_stored_offset", "GAUGE", "partition,topic"),
        ("pipeline_latency_seconds", "HISTOGRAM", ""),
        ("rate_limit_waits_total", "COUNTER", "route"),
        ("replays_total", "COUNTER", "result,topic"),
        ("retries_total", "COUNTER", "kind,stage,topic"),
        ("retry_schedule_depth", "GAUGE", "route"),
        ("retry_schedule_oldest_due_seconds", "GAUGE", "route"),
    ];

    /// One event of each kind that moves a metric (a labelled series shows
    /// only once it has a value).
    fn emit_one_of_each() {
        use crate::failure::{AttemptFailure, Failure, Retry, Stage};
        use crate::pipeline::Outcome;
        let (topic, route, ms) = ("telemetry-all", "telemetry-route", Duration::from_millis(3));
        let partition = "0";
        kafka::RecordsRead { topic, count: 1 }.emit();
        kafka::PartitionInFlight {
            topic,
            partition,
            in_flight: 1,
        }
        .emit();
        kafka::PartitionCommitted {
            topic,
            partition,
            offset: 1,
        }
        .emit();
        let lag = kafka::PartitionLag {
            topic: topic.into(),
            partition: 0,
            lag: 1,
        };
        kafka::ConsumerLagRead {
            lags: &[lag],
            gone: &[],
        }
        .emit();
        let failure = AttemptFailure {
            attempt: 1,
            at: chrono::Utc::now(),
            failure: Failure {
                stage: Stage::Decode,
                retry: Retry::Permanent,
                kind: "undecodable",
                message: String::new(),
            },
        };
        for (outcome, last_failure) in [
            (Outcome::Processed, None),
            (Outcome::DeadLettered, Some(&failure)),
        ] {
            pipeline::MessageSettled {
                topic,
                event_type: None,
                outcome,
                last_failure,
            }
            .emit();
        }
        pipeline::DependencyWaiting {
            dependency: "redis",
            error: "",
            delay: ms,
            what: "test",
        }
        .emit();
        retry::Retrying {
            topic,
            stage: "process",
            kind: "database_timeout",
            attempt: 1,
            delay: ms,
        }
        .emit();
        retry::RetryScheduleRead {
            depths: &[(route.into(), 1, 0.5)],
        }
        .emit();
        delivery::DeliveryStarted { route }.emit();
        delivery::DeliveryFinished { route }.emit();
        delivery::RateLimited { route }.emit();
        delivery::DownstreamRequested { route, elapsed: ms }.emit();
        delivery::DownstreamOutcome {
            route,
            outcome: "delivered",
        }
        .emit();
        dlq::DeadLettered { topic, new: 1 }.emit();
        dlq::DlqDepthRead {
            depths: &[(topic.into(), 1)],
        }
        .emit();
        dlq::DeadLetterActed {
            topic,
            result: "replayed",
        }
        .emit();
        trail::ProjectionWritten { elapsed: ms }.emit();
        trail::BatchAudited {
            batch: &[],
            duplicates: &[topic.into()],
            elapsed: ms,
        }
        .emit();
        outbox::OutboxBacklog {
            pending: 0,
            oldest_seconds: 0.0,
        }
        .emit();
        outbox::OutboxPublished { topic }.emit();
        flow::BreakerChanged {
            route,
            from: "closed",
            to: "open",
            why: "test",
        }
        .emit();
        flow::PartitionStall {
            topic,
            partition,
            oldest: None,
        }
        .emit();
        outbox::OutboxRefused {
            outbox_id: 1,
            aggregate_id: "a",
            topic,
        }
        .emit();
        api::RequestServed {
            method: "GET",
            route: "/health",
            status: "200",
            elapsed: ms,
        }
        .emit();
        let produced = api::EventProduced {
            event_id: "e",
            kind: "k",
            key: "",
            topic,
            partition: 0,
            offset: 0,
        };
        produced.emit();
    }

    #[test]
    fn every_series_keeps_its_name_type_and_labels() {
        emit_one_of_each();
        let found: Vec<(String, String, String)> = metrics()
            .registry
            .gather()
            .iter()
            .map(|family| {
                let mut labels: Vec<&str> = family.get_metric()[0]
                    .get_label()
                    .iter()
                    .map(|l| l.name())
                    .collect();
                labels.sort_unstable();
                let kind = format!("{:?}", family.get_field_type());
                (family.name().to_owned(), kind, labels.join(","))
            })
            .collect();
        let expected: Vec<(String, String, String)> = SERIES
            .iter()
            .map(|(n, t, l)| (n.to_string(), t.to_string(), l.to_string()))
            .collect();
        assert_eq!(found, expected);
        assert!(
            render().contains("consumer_lag_messages{partition=\"0\",topic=\"telemetry-all\"} 1")
        );
    }

    #[test]
    fn a_clients_broken_request_is_logged_only_when_debugging() {
        let info = logged("info");
        assert!(!info.contains("stream error"), "{info}");
        assert!(info.contains("unexpected eof"), "{info}");
        assert!(info.contains("custodian's own error"), "{info}");
        let debug = logged("info,actix_http=debug");
        assert!(debug.contains("stream error"), "{debug}");
    }
}
