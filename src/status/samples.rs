//! The overview's memory: every `interval` (5 s in `run`) a sample of the
//! process's cumulative counters goes into a ring of `capacity` samples (720:
//! one hour). `GET /status/samples` turns neighbouring samples into rates for
//! the console's charts; nothing is kept beyond the ring.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::core::Collector;
use serde::Serialize;

use crate::metrics::metrics;

/// Cumulative counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: DateTime<Utc>,
    /// Messages with a final outcome: processed, parked or duplicate.
    pub settled: u64,
    pub dead_letters: u64,
    pub retries: u64,
    /// Sum of the owned partitions' consumer lag (librdkafka statistics).
    pub lag: i64,
}

/// One point of a chart: what happened between two samples.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ChartPoint)]
pub struct Point {
    /// The end of the interval.
    pub at: DateTime<Utc>,
    pub settled_per_second: f64,
    /// Dead letters parked in the interval.
    pub dead_letters: u64,
    /// Retries in the interval.
    pub retries: u64,
    /// Lag at the end of the interval.
    pub lag: i64,
}

/// The chart data: oldest point first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ChartSeries)]
pub struct Series {
    pub interval_seconds: f64,
    pub capacity: usize,
    pub points: Vec<Point>,
}

/// The ring, shared by the sampler and the HTTP handler (a brief lock).
#[derive(Debug)]
pub struct Samples {
    interval: Duration,
    capacity: usize,
    ring: Mutex<VecDeque<Sample>>,
}

impl Samples {
    pub fn new(interval: Duration, capacity: usize) -> Self {
        Samples {
            interval,
            capacity: capacity.max(2),
            ring: Mutex::new(VecDeque::with_capacity(capacity.max(2))),
        }
    }

    pub fn push(&self, sample: Sample) {
        if let Ok(mut ring) = self.ring.lock() {
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(sample);
        }
    }

    /// Rates between neighbouring samples (counters that went backwards,
    /// as after a metric reset, count as zero).
    pub fn series(&self) -> Series {
        let ring: Vec<Sample> = self
            .ring
            .lock()
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default();
        let points = ring
            .windows(2)
            .map(|w| {
                let seconds = (w[1].at - w[0].at).num_milliseconds().max(1) as f64 / 1000.0;
                Point {
                    at: w[1].at,
                    settled_per_second: w[1].settled.saturating_sub(w[0].settled) as f64 / seconds,
                    dead_letters: w[1].dead_letters.saturating_sub(w[0].dead_letters),
                    retries: w[1].retries.saturating_sub(w[0].retries),
                    lag: w[1].lag,
                }
            })
            .collect();
        Series {
            interval_seconds: self.interval.as_secs_f64(),
            capacity: self.capacity,
            points,
        }
    }

    /// Samples the process's counters every `interval`, for ever (spawn it).
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.push(now());
        }
    }
}

/// The counters now.
fn now() -> Sample {
    let m = metrics();
    let settled = total(&m.processed) + total(&m.dlq) + total(&m.duplicates);
    Sample {
        at: Utc::now(),
        settled: settled as u64,
        dead_letters: total(&m.dlq) as u64,
        retries: total(&m.retries) as u64,
        lag: total(&m.consumer_lag) as i64,
    }
}

/// The sum of a counter or gauge over all its labels.
fn total(collector: &dyn Collector) -> f64 {
    collector
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        // A metric is a counter or a gauge; the other part reads zero.
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, settled: u64) -> Sample {
        Sample {
            at: DateTime::from_timestamp(seconds, 0).expect("valid time"),
            settled,
            dead_letters: settled / 10,
            retries: 0,
            lag: 5,
        }
    }

    #[test]
    fn points_are_rates_between_samples_and_the_ring_forgets_the_oldest() {
        let ring = Samples::new(Duration::from_secs(5), 3);
        ring.push(at(0, 0));
        ring.push(at(5, 100));
        ring.push(at(10, 300));
        ring.push(at(15, 300));
        let series = ring.series();
        assert_eq!(series.points.len(), 2, "three samples kept, two intervals");
        assert_eq!(series.points[0].settled_per_second, 40.0);
        assert_eq!(series.points[0].dead_letters, 20);
        assert_eq!(series.points[1].settled_per_second, 0.0);
    }
}
