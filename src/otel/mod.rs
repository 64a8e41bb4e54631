//! OpenTelemetry traces, off unless `telemetry.otlp_endpoint` is set: the
//! exporter (OTLP over HTTP, protobuf) and its sampler, W3C trace context in
//! Kafka and HTTP headers, and each record's span, which the stages hang
//! their children on (decode, apply, each http attempt, the audit write,
//! the dead-letter push).
//!
//! - [`sampler`]: parent-based with a ratio, but a failure is always kept.
//! - [`context`]: reading and writing `traceparent` in headers.
//! - [`record`]: a record's "process" span and its children.
//!
//! Only spans of the target [`TARGET`] are exported; with tracing off none
//! is even created on the data path (a record's trace is empty).

pub mod context;
pub mod record;
pub mod sampler;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;

use crate::config::TelemetrySettings;

/// The target of every span custodian exports.
pub const TARGET: &str = "custodian::trace";

/// Whether spans are exported (set once, at start).
static ON: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The exporter, kept to flush and shut it down at exit.
pub struct Traces {
    provider: Option<SdkTracerProvider>,
}

impl Traces {
    /// No traces (a command that neither consumes nor publishes).
    pub fn off() -> Traces {
        Traces { provider: None }
    }

    /// Builds the exporter when `telemetry.otlp_endpoint` is set; the
    /// tracer goes to the log setup (`telemetry::init`).
    pub fn start(settings: &TelemetrySettings) -> anyhow::Result<(Traces, Option<SdkTracer>)> {
        let Some(endpoint) = &settings.otlp_endpoint else {
            return Ok((Traces { provider: None }, None));
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .with_timeout(settings.export_timeout)
            .build()
            .map_err(|e| anyhow::anyhow!("telemetry.otlp_endpoint: {e}"))?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(settings.queue_size)
                    .with_max_export_batch_size(512)
                    .with_scheduled_delay(Duration::from_millis(500))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler::KeepFailures::new(settings.sample_ratio))
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .with_attribute(opentelemetry::KeyValue::new(
                        "service.version",
                        env!("CARGO_PKG_VERSION"),
                    ))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("custodian");
        ON.store(true, Ordering::Relaxed);
        Ok((
            Traces {
                provider: Some(provider),
            },
            Some(tracer),
        ))
    }

    /// Exports what is queued and stops, within `bound` (a collector that
    /// does not answer cannot hold the exit longer).
    pub fn shutdown(self, bound: Duration) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown_with_timeout(bound) {
                tracing::warn!(error = %e, "traces not all exported at exit");
            }
        }
    }
}
