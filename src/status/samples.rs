//! The overview's memory: every `interval` (5 s in `run`) a sample of the
//! process's cumulative counters and of the owned partitions' lag goes into a
//! ring of `capacity` samples (720: one hour). `GET /status/samples` turns
//! neighbouring samples into rates for the console's charts; nothing is kept
//! beyond the ring. Each lag reading also sets the `consumer_lag_messages`
//! gauge, so the chart, the gauge and the partitions table agree.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::registry::Registry;
use super::report::{self, PartitionRow};
use crate::telemetry::kafka::{ConsumerLagRead, PartitionLag};
use crate::telemetry::{dlq, pipeline, retry, trail, Emit};

/// Kafka's offset queries for a lag reading answer within this, each: a
/// reading holds the consumer meanwhile, so it is kept short (the close at
/// shutdown waits for the last holder).
const KAFKA_DEADLINE: Duration = Duration::from_millis(500);

/// Cumulative counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: DateTime<Utc>,
    /// Messages with a final outcome: processed, parked or duplicate.
    pub settled: u64,
    pub dead_letters: u64,
    pub retries: u64,
    /// Sum of the owned partitions' lag (`status::lag`: the figures of the
    /// partitions table), those whose lag is known.
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
    /// Lag at the end of the interval: messages between the last committed
    /// offset and the partition's end (high watermark), summed over the
    /// owned partitions.
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

    /// Samples the process's counters and the lag of the partitions in
    /// `partitions` every `interval` (spawn it).
    /// Stops when `stop` fires (before the drain at shutdown, so no reading
    /// holds the consumer when it closes).
    pub async fn run(self: Arc<Self>, partitions: Arc<Registry>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut owned = Vec::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            let (rows, _) = report::partitions(Arc::clone(&partitions), KAFKA_DEADLINE).await;
            let lag = read_lag(&rows, &mut owned);
            self.push(now(lag));
        }
    }
}

/// The lag of the partitions in `rows`, summed; emitted per partition for
/// the gauge. `owned` holds the partitions of the previous reading: those
/// missing from this one are gone.
fn read_lag(rows: &[PartitionRow], owned: &mut Vec<(String, i32)>) -> i64 {
    let lags: Vec<PartitionLag> = rows
        .iter()
        .filter_map(|r| {
            Some(PartitionLag {
                topic: r.topic.clone(),
                partition: r.partition,
                lag: r.lag?,
            })
        })
        .collect();
    let now: Vec<(String, i32)> = rows
        .iter()
        .map(|r| (r.topic.clone(), r.partition))
        .collect();
    let gone: Vec<(String, i32)> = owned.drain(..).filter(|p| !now.contains(p)).collect();
    ConsumerLagRead {
        lags: &lags,
        gone: &gone,
    }
    .emit();
    *owned = now;
    lags.iter().map(|p| p.lag).sum()
}

/// The counters now, with the lag just read.
fn now(lag: i64) -> Sample {
    Sample {
        at: Utc::now(),
        settled: pipeline::processed_total() + dlq::parked_total() + trail::duplicates_total(),
        dead_letters: dlq::parked_total(),
        retries: retry::retries_total(),
        lag,
    }
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

    fn row(topic: &str, partition: i32, committed: Option<i64>, high: Option<i64>) -> PartitionRow {
        PartitionRow {
            topic: topic.into(),
            partition,
            owner: "test/1".into(),
            state: "running".into(),
            committed_offset: committed,
            durable_watermark: None,
            high_watermark: high,
            lag: super::super::lag::lag(high, committed, None),
            in_flight: 0,
            held_by: None,
            stalled: None,
            last_error: None,
        }
    }

    #[test]
    fn the_chart_sums_the_lag_the_table_shows_and_forgets_gone_partitions() {
        let topic = "status-samples-lag";
        let mut owned = Vec::new();
        let rows = [
            row(topic, 0, Some(5), Some(12)),
            row(topic, 1, Some(3), Some(3)),
            row(topic, 2, None, None),
        ];
        assert_eq!(
            read_lag(&rows, &mut owned),
            7,
            "unknown lag counts for nothing"
        );
        assert_eq!(owned.len(), 3);
        let gauge = |p: i32| {
            let series = format!("consumer_lag_messages{{partition=\"{p}\",topic=\"{topic}\"}} ");
            crate::telemetry::render()
                .lines()
                .find_map(|l| l.strip_prefix(&series).map(str::to_owned))
        };
        assert_eq!(gauge(0).as_deref(), Some("7"));
        assert_eq!(gauge(2), None);
        assert_eq!(read_lag(&rows[1..2], &mut owned), 0);
        assert_eq!(gauge(0), None, "partition 0 is no longer owned");
        assert_eq!(gauge(1).as_deref(), Some("0"));
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
