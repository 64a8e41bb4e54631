//! librdkafka settings for the consumer and the producers.
//!
//! Neither offsets storing nor committing is automatic: custodian commits
//! each partition's durable watermark itself (see `offsets.rs`), at most
//! every `commit_interval` while it moves, and synchronously on revocation
//! and shutdown. (librdkafka's stored offsets outlive an assignment: a
//! partition that comes back to an earlier owner would otherwise have a
//! stale stored offset committed over a newer one.)

use rdkafka::config::ClientConfig;
use secrecy::ExposeSecret;

use crate::config::KafkaSettings;

pub fn consumer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", &settings.auto_offset_reset)
        .set(
            "session.timeout.ms",
            settings.session_timeout.as_millis().to_string(),
        )
        .set("enable.partition.eof", "false")
        // Answer fetches sooner when little is flowing: the default 500 ms
        // shows up directly as latency at low rates (kafka.extra overrides).
        .set("fetch.wait.max.ms", "50")
        // custodian reads each partition from its own queue, and for such
        // queues this bound applies per partition (librdkafka's default is
        // 64 MiB each): memory grows with the assignment unless it is small.
        .set(
            "queued.max.messages.kbytes",
            settings.prefetch_kbytes_per_partition.to_string(),
        )
        .set("queued.min.messages", "10000");
    for (key, value) in &settings.extra {
        config.set(key, value.expose_secret());
    }
    config
}

pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    config
}

/// The producer that republishes dead letters: `acks=all`, idempotent, with
/// the same connection settings (`kafka.extra`: TLS, SASL) as the consumer.
pub fn replay_producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = producer_config(&settings.brokers);
    config.set("enable.idempotence", "true");
    for (key, value) in &settings.extra {
        config.set(key, value.expose_secret());
    }
    config
}
