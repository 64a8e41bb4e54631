//! HTTP delivery to downstreams, by route: deliveries under way, what each
//! request came to, its latency, and waits for the route's rate limit.
//! Emitted by `delivery::send`.

use std::time::Duration;

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec, Registry};

use super::{Def, Emit};

pub(super) struct Metrics {
    /// HTTP deliveries under way, by route.
    in_flight: IntGaugeVec,
    /// HTTP deliveries by route and outcome.
    requests: IntCounterVec,
    /// Seconds per HTTP delivery attempt, by route.
    seconds: HistogramVec,
    /// Deliveries that waited for the route's rate limit.
    rate_limit_waits: IntCounterVec,
}

impl Metrics {
    pub(super) fn register(r: &Registry) -> Self {
        Metrics {
            in_flight: Def {
                name: "deliveries_in_flight",
                help: "HTTP deliveries under way.",
                labels: &["route"],
            }
            .gauge_vec(r),
            requests: Def {
                name: "downstream_requests_total",
                help: "HTTP deliveries by route and outcome.",
                labels: &["route", "outcome"],
            }
            .counter_vec(r),
            seconds: Def {
                name: "downstream_latency_seconds",
                help: "Seconds per HTTP delivery attempt.",
                labels: &["route"],
            }
            .latency_vec(r),
            rate_limit_waits: Def {
                name: "rate_limit_waits_total",
                help: "Deliveries that waited for their route's rate limit.",
                labels: &["route"],
            }
            .counter_vec(r),
        }
    }
}

fn metrics() -> &'static Metrics {
    &super::metrics().delivery
}

/// A delivery's request is about to go out; a [`DeliveryFinished`] follows
/// however it ends (emit that from a guard, so a dropped future counts too).
pub struct DeliveryStarted<'a> {
    pub route: &'a str,
}

impl Emit for DeliveryStarted<'_> {
    fn emit(self) {
        metrics().in_flight.with_label_values(&[self.route]).inc();
    }
}

/// A delivery's request ended, answered or not.
pub struct DeliveryFinished<'a> {
    pub route: &'a str,
}

impl Emit for DeliveryFinished<'_> {
    fn emit(self) {
        metrics().in_flight.with_label_values(&[self.route]).dec();
    }
}

/// A delivery waited for its route's rate limit.
pub struct RateLimited<'a> {
    pub route: &'a str,
}

impl Emit for RateLimited<'_> {
    fn emit(self) {
        metrics()
            .rate_limit_waits
            .with_label_values(&[self.route])
            .inc();
    }
}

/// A downstream request ended (answered or not) after `elapsed`.
pub struct DownstreamRequested<'a> {
    pub route: &'a str,
    pub elapsed: Duration,
}

impl Emit for DownstreamRequested<'_> {
    fn emit(self) {
        metrics()
            .seconds
            .with_label_values(&[self.route])
            .observe(self.elapsed.as_secs_f64());
    }
}

/// What a downstream request came to (`delivered`, `transient`, …).
pub struct DownstreamOutcome<'a> {
    pub route: &'a str,
    pub outcome: &'a str,
}

impl Emit for DownstreamOutcome<'_> {
    fn emit(self) {
        metrics()
            .requests
            .with_label_values(&[self.route, self.outcome])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_delivery_is_no_longer_in_flight() {
        let route = "telemetry-delivery-route";
        let gauge = || metrics().in_flight.with_label_values(&[route]).get();
        DeliveryStarted { route }.emit();
        DeliveryStarted { route }.emit();
        assert_eq!(gauge(), 2);
        DeliveryFinished { route }.emit();
        assert_eq!(gauge(), 1);
    }
}
