//! Reading from Kafka: records read per topic, and each owned partition's
//! in-flight count, committed offset and lag. Emitted by the partition
//! actors (reads, commits, stops) and the status sampler (lag).

use prometheus::{IntCounterVec, IntGaugeVec, Registry};

use super::{Def, Emit};

pub(super) struct Metrics {
    /// Records read from Kafka, by topic.
    consumed: IntCounterVec,
    /// Records between read and durable outcome, per partition.
    in_flight: IntGaugeVec,
    /// The durable watermark last committed, per partition.
    committed_offset: IntGaugeVec,
    /// Messages between the last committed offset and the partition's end
    /// (high watermark), per owned partition: `status::lag`, the figure
    /// `/status` and the console show.
    consumer_lag: IntGaugeVec,
}

impl Metrics {
    pub(super) fn register(r: &Registry) -> Self {
        Metrics {
            consumed: Def {
                name: "messages_consumed_total",
                help: "Records read from Kafka.",
                labels: &["topic"],
            }
            .counter_vec(r),
            in_flight: Def {
                name: "partition_in_flight_messages",
                help: "Records between read and durable outcome.",
                labels: &["topic", "partition"],
            }
            .gauge_vec(r),
            committed_offset: Def {
                name: "partition_stored_offset",
                help: "Durable watermark stored for commit.",
                labels: &["topic", "partition"],
            }
            .gauge_vec(r),
            consumer_lag: Def {
                name: "consumer_lag_messages",
                help: "Messages between the committed offset and the end of the partition.",
                labels: &["topic", "partition"],
            }
            .gauge_vec(r),
        }
    }
}

fn metrics() -> &'static Metrics {
    &super::metrics().kafka
}

/// A partition actor read records and registered them in flight.
pub struct RecordsRead<'a> {
    pub topic: &'a str,
    pub count: usize,
}

impl Emit for RecordsRead<'_> {
    fn emit(self) {
        metrics()
            .consumed
            .with_label_values(&[self.topic])
            .inc_by(self.count as u64);
    }
}

/// A partition's count of records read and not yet durable changed.
pub struct PartitionInFlight<'a> {
    pub topic: &'a str,
    /// The partition number, as the label shows it.
    pub partition: &'a str,
    pub in_flight: usize,
}

impl Emit for PartitionInFlight<'_> {
    fn emit(self) {
        metrics()
            .in_flight
            .with_label_values(&[self.topic, self.partition])
            .set(self.in_flight as i64);
    }
}

/// A partition actor committed its durable watermark (asynchronously: the
/// commit was handed to the client).
pub struct PartitionCommitted<'a> {
    pub topic: &'a str,
    pub partition: &'a str,
    pub offset: i64,
}

impl Emit for PartitionCommitted<'_> {
    fn emit(self) {
        metrics()
            .committed_offset
            .with_label_values(&[self.topic, self.partition])
            .set(self.offset);
    }
}

/// A partition actor stopped (revoked, restarted, shutting down): its
/// series go, so this instance reports no partition it does not own.
pub struct PartitionForgotten<'a> {
    pub topic: &'a str,
    pub partition: &'a str,
}

impl Emit for PartitionForgotten<'_> {
    fn emit(self) {
        let m = metrics();
        let labels = [self.topic, self.partition];
        let _ = m.in_flight.remove_label_values(&labels);
        let _ = m.committed_offset.remove_label_values(&labels);
        let _ = m.consumer_lag.remove_label_values(&labels);
    }
}

/// One partition's lag as `status::lag` computed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}

/// The status sampler read the owned partitions' lag (the figures of the
/// partitions table, summed for the chart). A partition whose lag is
/// unknown (Kafka did not answer) keeps its last figure; `gone` are the
/// partitions of the previous reading this instance no longer owns.
pub struct ConsumerLagRead<'a> {
    pub lags: &'a [PartitionLag],
    pub gone: &'a [(String, i32)],
}

impl Emit for ConsumerLagRead<'_> {
    fn emit(self) {
        let gauge = &metrics().consumer_lag;
        for (topic, partition) in self.gone {
            let _ = gauge.remove_label_values(&[topic, &partition.to_string()]);
        }
        for p in self.lags {
            gauge
                .with_label_values(&[&p.topic, &p.partition.to_string()])
                .set(p.lag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exposition's line for `topic`/`partition` of `name`, if any.
    fn line(name: &str, topic: &str, partition: &str) -> Option<String> {
        let series = format!("{name}{{partition=\"{partition}\",topic=\"{topic}\"}} ");
        super::super::render()
            .lines()
            .find(|l| l.starts_with(&series))
            .map(str::to_owned)
    }

    #[test]
    fn a_lag_reading_sets_the_owned_partitions_and_drops_the_gone() {
        let topic = "telemetry-kafka-lag";
        let lags = [
            PartitionLag {
                topic: topic.into(),
                partition: 0,
                lag: 7,
            },
            PartitionLag {
                topic: topic.into(),
                partition: 1,
                lag: 0,
            },
        ];
        ConsumerLagRead {
            lags: &lags,
            gone: &[],
        }
        .emit();
        let lag = |p| line("consumer_lag_messages", topic, p);
        assert_eq!(
            lag("0").as_deref().and_then(|l| l.split(' ').nth(1)),
            Some("7")
        );
        ConsumerLagRead {
            lags: &lags[1..],
            gone: &[(topic.into(), 0)],
        }
        .emit();
        assert_eq!(lag("0"), None, "a partition no longer owned");
        assert!(lag("1").is_some(), "an owned one stays");
    }

    #[test]
    fn a_forgotten_partition_has_no_series_left() {
        let (topic, partition) = ("telemetry-kafka-forget", "3");
        PartitionInFlight {
            topic,
            partition,
            in_flight: 2,
        }
        .emit();
        PartitionCommitted {
            topic,
            partition,
            offset: 41,
        }
        .emit();
        let stored = line("partition_stored_offset", topic, partition);
        assert!(stored.is_some_and(|l| l.ends_with(" 41")));
        PartitionForgotten { topic, partition }.emit();
        assert!(!super::super::render().contains(topic));
    }
}
