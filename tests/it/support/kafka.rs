//! Kafka for tests: producing records (positional tuples, or a [`Record`]
//! builder), the events they carry, and reading committed offsets and
//! watermarks.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::*;

/// A seed-003 event of `event_type` for transaction `id` with `amount`.
/// `group`'s committed offset of each of `topic`'s partitions (`None` where
/// it has none), asked of the broker at `bootstrap`.
pub fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            },
        )
        .collect()
}

pub fn transaction_event(event_type: &str, id: &str, amount: f64, timestamp: &str) -> String {
    format!(
        r#"{{"event_type":"{event_type}","transaction":{{"id":"{id}","user_id":"u1","transaction_type":"card","status":"completed","currency":"USD","amount":{amount},"metadata":{{}}}},"timestamp":"{timestamp}"}}"#
    )
}

/// A valid seed-003 `transaction.created` event for transaction `id`.
pub fn created_event(id: &str) -> String {
    format!(
        r#"{{"event_type":"transaction.created","transaction":{{"id":"{id}","user_id":"u1","transaction_type":"card","status":"completed","currency":"USD","amount":12.5,"metadata":{{}}}},"timestamp":"2024-01-01T12:00:00Z"}}"#
    )
}

impl TestEnv {
    pub fn producer(&self) -> FutureProducer {
        custodian::kafka::client::producer_config(&self.broker.bootstrap_servers())
            .create()
            .expect("producer")
    }

    /// Publishes records (key, payload, partition) and waits for the acks.
    pub fn produce(&self, records: &[(Option<&str>, &[u8], Option<i32>)]) {
        let producer = self.producer();
        self.rt.block_on(async {
            for (key, payload, partition) in records {
                let record = record(&self.topic, *key, payload, *partition);
                producer
                    .send(record, Duration::from_secs(10))
                    .await
                    .map_err(|(e, _)| e)
                    .expect("kafka acknowledged");
            }
        });
    }

    /// Publishes one record with headers to partition 0.
    pub fn produce_with_headers(&self, payload: &[u8], headers: &[(&str, &[u8])]) {
        use rdkafka::message::{Header, OwnedHeaders};
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header {
                key,
                value: Some(*value),
            });
        }
        let producer = self.producer();
        self.rt
            .block_on(
                producer.send(
                    FutureRecord::<(), [u8]>::to(&self.topic)
                        .partition(0)
                        .payload(payload)
                        .headers(owned),
                    Duration::from_secs(10),
                ),
            )
            .map_err(|(e, _)| e)
            .expect("kafka acknowledged");
    }

    /// The record at `partition`/`offset`: key, payload and headers.
    pub fn record_at(
        &self,
        partition: i32,
        offset: i64,
    ) -> (
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        custodian::kafka::envelope::Headers,
    ) {
        use rdkafka::message::{Headers, Message};
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap_servers())
            .set("group.id", format!("{}-reader", self.group))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
            .expect("partition offset");
        consumer.assign(&tpl).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) if m.offset() == offset => {
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default();
                    return (
                        m.key().map(<[u8]>::to_vec),
                        m.payload().map(<[u8]>::to_vec),
                        headers,
                    );
                }
                _ => {}
            }
        }
        panic!("no record at {}/{partition}@{offset}", self.topic);
    }

    /// Publishes `count` synthetic seed-003 events; returns them.
    pub fn produce_synthetic(
        &self,
        count: usize,
        seed: u64,
        update_ratio: f64,
    ) -> Vec<custodian::synth::SyntheticEvent> {
        let mut generator = custodian::synth::Generator::new(seed, None, 20, update_ratio);
        let events: Vec<_> = (0..count).map(|_| generator.next_event()).collect();
        let producer = self.producer();
        self.rt.block_on(async {
            let sends = events.iter().map(|e| {
                producer.send(
                    FutureRecord::to(&self.topic)
                        .key(&e.key)
                        .payload(&e.payload),
                    Duration::from_secs(30),
                )
            });
            for result in futures::future::join_all(sends).await {
                result.map_err(|(e, _)| e).expect("kafka acknowledged");
            }
        });
        events
    }

    /// Committed offsets of this test's group, per partition.
    pub fn committed(&self) -> Vec<Option<i64>> {
        committed_offsets(
            &self.broker.bootstrap_servers(),
            &self.group,
            &self.topic,
            self.partitions,
        )
    }

    /// The high watermark (next offset to be written) per partition.
    pub fn high_watermarks(&self) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap_servers())
            .create()
            .expect("consumer");
        (0..self.partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
                    .expect("watermarks")
                    .1
            })
            .collect()
    }

    /// The group's committed offsets, 0 where none.
    pub fn committed_or_zero(&self) -> Vec<i64> {
        self.committed()
            .into_iter()
            .map(|c| c.unwrap_or(0))
            .collect()
    }

    /// Every partition committed up to its end.
    pub fn assert_committed_to_end(&self) {
        assert_eq!(self.committed_or_zero(), self.high_watermarks());
    }
}

/// One record to produce, named field by field (in place of the positional
/// `(key, payload, partition)` tuples of [`TestEnv::produce`]); the
/// partitioner places it.
#[derive(Debug, Clone, Default)]
pub struct Record {
    key: Option<String>,
    payload: Vec<u8>,
}

impl Record {
    pub fn new(payload: impl Into<Vec<u8>>) -> Record {
        Record {
            payload: payload.into(),
            ..Record::default()
        }
    }

    pub fn key(mut self, key: &str) -> Record {
        self.key = Some(key.to_owned());
        self
    }
}

impl TestEnv {
    /// Publishes `records` in order, each acknowledged by Kafka.
    pub fn send(&self, records: &[Record]) {
        let tuples: Vec<(Option<&str>, &[u8], Option<i32>)> = records
            .iter()
            .map(|r| (r.key.as_deref(), r.payload.as_slice(), None))
            .collect();
        self.produce(&tuples);
    }
}

/// A record to `topic`, with its key and partition when given.
pub fn record<'a>(
    topic: &'a str,
    key: Option<&'a str>,
    payload: &'a [u8],
    partition: Option<i32>,
) -> FutureRecord<'a, str, [u8]> {
    let mut record = FutureRecord::to(topic).payload(payload);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(p) = partition {
        record = record.partition(p);
    }
    record
}
