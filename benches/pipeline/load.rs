//! The load: seed-003 events (a share of them poison) produced to the broker
//! by this driver, counting what the broker acknowledged per partition, and
//! the consumer group's committed offsets read back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;

use custodian::formats::encode::Encoder;
use custodian::synth::Generator;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};

/// Where each partition ends: one past the last acknowledged offset.
pub type Ends = HashMap<i32, i64>;

#[derive(Default)]
struct Acks {
    ends: Mutex<Ends>,
    acked: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut ends) = self.ends.lock() {
                    let end = ends.entry(m.partition()).or_insert(0);
                    *end = (*end).max(m.offset() + 1);
                }
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

pub struct Load {
    producer: BaseProducer<Acks>,
    events: Generator,
    /// Writes each event in the wire format (a poison event, which does
    /// not fit the schema, goes as it is: a dead letter either way).
    encoder: Option<Arc<Encoder>>,
    /// Events the encoder could not encode.
    pub unencoded: u64,
}

impl Load {
    pub fn new(bootstrap: &str, seed: u64, poison: f64) -> anyhow::Result<Load> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("linger.ms", "20")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "500000")
            .set("message.timeout.ms", "120000")
            .create_with_context(Acks::default())?;
        let events = Generator::new(seed, None, 1000, 0.1).with_poison_ratio(poison);
        Ok(Load {
            producer,
            events,
            encoder: None,
            unencoded: 0,
        })
    }

    /// Events from now on written in `encoder`'s wire format.
    pub fn encoded(mut self, encoder: Option<Arc<Encoder>>) -> Load {
        self.encoder = encoder;
        self
    }

    /// Produces `n` events, `rate` per second (0: as fast as the broker
    /// takes them), and waits for every acknowledgement.
    pub fn produce(&mut self, topic: &str, n: u64, rate: u64) -> anyhow::Result<Ends> {
        self.produce_within(topic, n, rate, None)
    }

    /// Like `produce`, but never more than `window` records ahead of what
    /// `group` has committed: for a broker that cannot hold the whole load
    /// (the mock cluster keeps ~5 MB per partition).
    pub fn produce_within(
        &mut self,
        topic: &str,
        n: u64,
        rate: u64,
        window: Option<(u64, &Group)>,
    ) -> anyhow::Result<Ends> {
        let started = Instant::now();
        let mut settled = 0;
        for i in 0..n {
            if let Some((window, group)) = window {
                while i >= settled + window {
                    self.producer.poll(Duration::from_millis(5));
                    settled = group.committed_total(topic, self.ends()?.keys())? as u64;
                }
            }
            if rate > 0 {
                let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    self.producer.poll(Duration::ZERO);
                    std::thread::sleep(wait);
                }
            }
            let mut event = self.events.next_event();
            if let Some(encoder) = &self.encoder {
                match encoder.encode(&event.payload) {
                    Ok(encoded) => event.payload = encoded,
                    Err(_) => self.unencoded += 1,
                }
            }
            self.send(
                BaseRecord::to(topic)
                    .key(event.key.as_str())
                    .payload(event.payload.as_slice()),
            )?;
        }
        self.acknowledged()
    }

    /// Produces `records` (key, payload) to `topic`'s `partition`, in
    /// order, and waits for every acknowledgement.
    pub fn produce_records(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[(String, String)],
    ) -> anyhow::Result<Ends> {
        for (key, payload) in records {
            let record = BaseRecord::to(topic).partition(partition);
            self.send(record.key(key.as_str()).payload(payload.as_bytes()))?;
        }
        self.acknowledged()
    }

    /// Hands one record to the producer, waiting while its queue is full.
    fn send(&self, mut record: BaseRecord<'_, str, [u8]>) -> anyhow::Result<()> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    self.producer.poll(Duration::from_millis(10));
                    record = r;
                }
                Err((e, _)) => anyhow::bail!("produce: {e}"),
            }
        }
    }

    /// Flushes, and fails unless the broker acknowledged every record.
    fn acknowledged(&self) -> anyhow::Result<Ends> {
        self.producer.flush(Duration::from_secs(300))?;
        let failed = self.producer.context().failed.swap(0, Ordering::Relaxed);
        anyhow::ensure!(failed == 0, "{failed} records were not acknowledged");
        self.ends()
    }

    fn ends(&self) -> anyhow::Result<Ends> {
        let acks = self.producer.context();
        let ends = acks.ends.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        Ok(ends.clone())
    }
}

/// Reads a consumer group's committed offsets without joining it.
pub struct Group {
    consumer: BaseConsumer,
}

impl Group {
    pub fn new(bootstrap: &str, group: &str) -> anyhow::Result<Group> {
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Group { consumer })
    }

    fn committed<'a>(
        &self,
        topic: &str,
        partitions: impl Iterator<Item = &'a i32>,
    ) -> anyhow::Result<Ends> {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(topic, *p);
        }
        let got = self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(10))?;
        Ok(got
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => (e.partition(), o),
                _ => (e.partition(), 0),
            })
            .collect())
    }

    /// The sum of the committed offsets of these partitions of `topic`.
    pub fn committed_total<'a>(
        &self,
        topic: &str,
        partitions: impl Iterator<Item = &'a i32>,
    ) -> anyhow::Result<i64> {
        Ok(self.committed(topic, partitions)?.values().sum())
    }

    /// How many of the records before `ends` lie below the committed
    /// offsets of `topic`.
    pub fn settled(&self, topic: &str, ends: &Ends) -> anyhow::Result<i64> {
        Ok(self
            .committed(topic, ends.keys())?
            .iter()
            .map(|(p, o)| (*o).min(ends.get(p).copied().unwrap_or(0)))
            .sum())
    }
}
