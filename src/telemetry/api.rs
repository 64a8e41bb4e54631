//! The HTTP API: requests served (by method, route pattern and status, with
//! their latency) and events published through `POST /produce`. Emitted by
//! `api`'s request middleware and its produce handler.

use std::time::Duration;

use prometheus::{HistogramVec, IntCounterVec, Registry};

use super::{Def, Emit};
use crate::text::clip;

pub(super) struct Metrics {
    /// HTTP requests served, by method, route pattern and status.
    requests: IntCounterVec,
    /// Seconds per HTTP request served, by method and route pattern.
    latency_seconds: HistogramVec,
    /// Events published by `POST /produce` (seed 004's producer metric).
    produced: IntCounterVec,
}

impl Metrics {
    pub(super) fn register(r: &Registry) -> Self {
        Metrics {
            requests: Def {
                name: "http_requests_total",
                help: "HTTP requests served.",
                labels: &["method", "route", "status"],
            }
            .counter_vec(r),
            latency_seconds: Def {
                name: "http_latency_seconds",
                help: "Seconds per HTTP request served.",
                labels: &["method", "route"],
            }
            .latency_vec(r),
            produced: Def {
                name: "events_produced_total",
                help: "Events published through POST /produce.",
                labels: &["topic", "type"],
            }
            .counter_vec(r),
        }
    }
}

fn metrics() -> &'static Metrics {
    &super::metrics().api
}

/// The HTTP server answered a request: by method, route pattern (bounded:
/// the pattern, never the concrete path) and status.
pub struct RequestServed<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub status: &'a str,
    pub elapsed: Duration,
}

impl Emit for RequestServed<'_> {
    fn emit(self) {
        let m = metrics();
        m.requests
            .with_label_values(&[self.method, self.route, self.status])
            .inc();
        m.latency_seconds
            .with_label_values(&[self.method, self.route])
            .observe(self.elapsed.as_secs_f64());
    }
}

/// `POST /produce` published an event and Kafka acknowledged it.
pub struct EventProduced<'a> {
    pub event_id: &'a str,
    pub kind: &'a str,
    pub key: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl Emit for EventProduced<'_> {
    fn emit(self) {
        metrics()
            .produced
            .with_label_values(&[self.topic, self.kind])
            .inc();
        tracing::info!(
            event_id = %self.event_id,
            r#type = %clip(self.kind),
            key = %clip(self.key),
            topic = %self.topic,
            partition = self.partition,
            offset = self.offset,
            "event produced"
        );
    }
}
