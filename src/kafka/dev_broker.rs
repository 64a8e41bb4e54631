//! `custodian dev-broker`: librdkafka's in-process mock cluster, for local
//! runs and demos. It speaks the Kafka protocol on a loopback port, keeps
//! everything in memory (about 5 MB per partition; older data is dropped),
//! and is NOT for production.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

pub struct DevBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl DevBroker {
    /// Starts a mock cluster with `brokers` brokers and creates `topics`.
    pub fn start(
        brokers: i32,
        topics: &[String],
        partitions: i32,
    ) -> rdkafka::error::KafkaResult<Self> {
        let cluster = MockCluster::new(brokers)?;
        for topic in topics {
            cluster.create_topic(topic, partitions, 1)?;
        }
        Ok(DevBroker { cluster })
    }

    /// The `bootstrap.servers` string to give clients.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) -> rdkafka::error::KafkaResult<()> {
        self.cluster.create_topic(topic, partitions, 1)
    }
}
