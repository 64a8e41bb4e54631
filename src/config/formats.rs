//! The `schema_registry` section and `formats`: which topics carry Avro,
//! Protobuf or JSON Schema payloads in the Confluent wire format, and the
//! registry their schema ids name.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::{duration, invalid, ConfigError};

/// A Confluent-compatible schema registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistrySettings {
    /// `http(s)://host:port` of the registry; unset when no topic needs one.
    #[serde(default)]
    pub url: Option<String>,
    /// Basic auth (optional); the password is a secret, never logged.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Longest one registry call may take.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Most compiled schemas kept (the oldest goes first).
    pub cache_size: usize,
}

/// A payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadFormat {
    Json,
    Avro,
    Protobuf,
    JsonSchema,
}

/// The format of one topic's payloads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicFormat {
    pub topic: String,
    pub format: PayloadFormat,
    /// Avro only: the schema records are read into (JSON text). Records
    /// written with an older, compatible schema take this one's shape
    /// (fields added with defaults, fields dropped).
    #[serde(default)]
    pub reader_schema: Option<String>,
}

pub(super) fn registry_defaults() -> serde_json::Value {
    serde_json::json!({ "timeout": "5s", "cache_size": 1000 })
}

impl SchemaRegistrySettings {
    pub(super) fn validate(&self, formats: &[TopicFormat]) -> Result<(), ConfigError> {
        let needed = formats.iter().any(|f| f.format != PayloadFormat::Json);
        match &self.url {
            None if needed => {
                return Err(invalid(
                    "schema_registry.url",
                    "required: a topic in `formats` is avro, protobuf or json-schema",
                ))
            }
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err(invalid(
                    "schema_registry.url",
                    "must be an http:// or https:// URL",
                ))
            }
            _ => {}
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(invalid(
                "schema_registry.username",
                "required with a password",
            ));
        }
        if !(1..=1_000_000).contains(&self.cache_size) {
            return Err(invalid("schema_registry.cache_size", "1 to 1000000"));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(300) {
            return Err(invalid(
                "schema_registry.timeout",
                "more than zero, at most 5m",
            ));
        }
        Ok(())
    }
}

/// Each topic once, each a consumed topic, a reader schema only for Avro
/// and one that parses.
pub(super) fn validate_formats(
    formats: &[TopicFormat],
    topics: &[String],
) -> Result<(), ConfigError> {
    for (i, f) in formats.iter().enumerate() {
        if !topics.contains(&f.topic) {
            return Err(invalid(
                format!("formats[{i}].topic"),
                "is not one of kafka.topics",
            ));
        }
        if formats[..i].iter().any(|g| g.topic == f.topic) {
            return Err(invalid(format!("formats[{i}].topic"), "named twice"));
        }
        if let Some(reader) = &f.reader_schema {
            if f.format != PayloadFormat::Avro {
                return Err(invalid(
                    format!("formats[{i}].reader_schema"),
                    "only for avro",
                ));
            }
            if let Err(e) = apache_avro::Schema::parse_str(reader) {
                return Err(invalid(
                    format!("formats[{i}].reader_schema"),
                    format!("not an Avro schema: {e}"),
                ));
            }
        }
    }
    Ok(())
}
