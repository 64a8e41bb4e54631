//! librdkafka settings for the consumer and the producers.
//!
//! The consumer stores offsets only when custodian says so
//! (`enable.auto.offset.store=false`, see `offsets.rs`); librdkafka then
//! commits what was stored every `commit_interval`, and custodian commits
//! synchronously on revocation and shutdown.

use rdkafka::config::ClientConfig;
use secrecy::ExposeSecret;

use crate::config::KafkaSettings;

pub fn consumer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.commit.interval.ms",
            settings.commit_interval.as_millis().to_string(),
        )
        .set("auto.offset.reset", &settings.auto_offset_reset)
        .set(
            "session.timeout.ms",
            settings.session_timeout.as_millis().to_string(),
        )
        .set("enable.partition.eof", "false")
        // Answer fetches sooner when little is flowing: the default 500 ms
        // shows up directly as latency at low rates (kafka.extra overrides).
        .set("fetch.wait.max.ms", "50");
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
