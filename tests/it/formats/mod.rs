//! Payload formats (issue 28) against a real schema registry (Karapace,
//! started by `dev/services.sh` on its own tansu): transaction events in
//! Avro, Protobuf and JSON Schema applied exactly as their JSON form,
//! each failure kind dead-lettered with its bytes, a registry outage that
//! pauses and resumes, byte-identical replay, and Avro schema evolution.

mod end_to_end;
mod failures;
mod forward;
mod outage;
mod properties;

use std::sync::Arc;
use std::time::Duration;

use custodian::config::{PayloadFormat, Settings, TopicFormat};
use custodian::formats::encode::Encoder;
use custodian::formats::registry::{Endpoint, Registry};
use custodian::formats::schema::Kind;

use crate::support::TestEnv;

/// How long a test waits for what it produced.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The registry `dev/services.sh` started.
pub fn registry_url() -> String {
    std::env::var("TEST_SCHEMA_REGISTRY_URL").expect(
        "TEST_SCHEMA_REGISTRY_URL: run the tests through dev/test, or eval \"$(dev/services.sh env)\" \
         (the schema registry needs tansu: dev/services.sh tansu)",
    )
}

pub fn registry(url: &str) -> Registry {
    Registry::new(
        Endpoint {
            url: url.to_owned(),
            username: None,
            password: None,
            timeout: Duration::from_secs(5),
        },
        16,
    )
    .expect("registry client")
}

/// The schema file of `kind` under dev/schemas.
pub fn schema_text(kind: Kind) -> String {
    let file = match kind {
        Kind::Avro => "transaction.avsc",
        Kind::Protobuf => "transaction.proto",
        Kind::JsonSchema => "transaction.schema.json",
    };
    std::fs::read_to_string(format!("{}/dev/schemas/{file}", env!("CARGO_MANIFEST_DIR")))
        .expect("dev/schemas")
}

/// An encoder for this test's own subject (the registry is shared, and
/// keeps its subjects across runs).
pub fn encoder(env: &TestEnv, kind: Kind, text: &str) -> Arc<Encoder> {
    let registry = registry(&registry_url());
    let subject = format!("{}-{}-value", env.topic, kind.as_str());
    Arc::new(
        env.rt
            .block_on(Encoder::new(&registry, &subject, kind, Some(text)))
            .expect("schema registered"),
    )
}

/// This test's settings with its topic in `format`.
pub fn settings(env: &TestEnv, format: PayloadFormat, reader_schema: Option<String>) -> Settings {
    let mut settings = env.settings();
    settings.schema_registry.url = Some(registry_url());
    settings.formats = vec![TopicFormat {
        topic: env.topic.clone(),
        format,
        reader_schema,
    }];
    settings
}

/// A transaction event's JSON (`amount` as the exact number text).
pub fn event(id: &str, amount: &str, status: &str) -> String {
    format!(
        r#"{{"event_type":"transaction.created","transaction":{{"id":"{id}","user_id":"u1","transaction_type":"card","status":"{status}","currency":"USD","amount":{amount},"metadata":{{"merchant_name":"Cafe"}}}},"timestamp":"2024-01-01T12:00:00Z"}}"#
    )
}
