//! Payload formats (issue 28): topics whose records are Avro, Protobuf or
//! JSON Schema in the Confluent wire format are decoded here to the JSON
//! the handler kinds already take, with their schema fetched from the
//! registry once and cached. The record's own bytes are never changed: the
//! dead-letter queue, the record download and replay keep them.
//!
//! Two steps, so the pipeline stays pure: the enricher first gathers every
//! schema its batch names ([`Formats::schemas`], from the cache or the
//! registry; it waits out a registry outage), then [`Formats::readable`]
//! decodes each record with what was gathered.

mod avro_json;
pub mod encode;
pub mod forward;
pub mod mismatch;
pub mod registry;
pub mod schema;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;

pub use crate::config::PayloadFormat as Format;
use crate::config::Settings;
use crate::failure::{Failure, Stage};
use registry::{Endpoint, FetchError, Registry};
use schema::Schema;

/// A record's body missing its wire-format header, or with a bad one.
pub const WIRE_FORMAT: &str = "wire_format";
/// A schema id the registry does not know, or a schema custodian cannot
/// read, or one of another format than the topic's.
pub const UNKNOWN_SCHEMA: &str = "unknown_schema";
/// A body that does not match its schema.
pub const SCHEMA_MISMATCH: &str = "schema_mismatch";

/// The dependency name an unreachable registry is waited out under.
pub const REGISTRY: &str = "schema_registry";

/// What the pipeline reads of a record.
pub enum Readable {
    /// JSON as it is (the topic's format is `json`).
    AsIs,
    /// Decoded from its schema: the JSON text, and the schema.
    Decoded { json: Vec<u8>, schema: Arc<Schema> },
    /// Not readable: dead-lettered with its bytes intact.
    Failed(Failure),
}

/// The schemas one batch names: each, or why the registry had none.
#[derive(Default)]
pub struct Schemas(HashMap<u32, Result<Arc<Schema>, FetchError>>);

impl Schemas {
    /// These schemas, as if gathered from a registry (tests, benches).
    pub fn of(schemas: impl IntoIterator<Item = Schema>) -> Schemas {
        Schemas(
            schemas
                .into_iter()
                .map(|s| (s.id, Ok(Arc::new(s))))
                .collect(),
        )
    }
}

/// Each topic's format, the registry, and the Avro reader schemas.
pub struct Formats {
    by_topic: HashMap<String, Format>,
    readers: HashMap<String, apache_avro::Schema>,
    registry: Option<Registry>,
}

impl Formats {
    /// From `formats` and `schema_registry` (checked at start).
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Formats> {
        let registry = match Endpoint::configured(&settings.schema_registry) {
            Some(endpoint) => Some(Registry::new(
                endpoint,
                settings.schema_registry.cache_size,
            )?),
            None => None,
        };
        let mut readers = HashMap::new();
        for f in &settings.formats {
            if let Some(text) = &f.reader_schema {
                readers.insert(f.topic.clone(), apache_avro::Schema::parse_str(text)?);
            }
        }
        Ok(Formats {
            by_topic: settings
                .formats
                .iter()
                .map(|f| (f.topic.clone(), f.format))
                .collect(),
            readers,
            registry,
        })
    }

    /// JSON on every topic, no registry (tests, tools).
    pub fn json_only() -> Formats {
        Formats::for_topics([])
    }

    /// These topics' formats, no registry: schemas come from the caller's
    /// [`Schemas`] (tests, benches).
    pub fn for_topics<'a>(formats: impl IntoIterator<Item = (&'a str, Format)>) -> Formats {
        Formats {
            by_topic: formats
                .into_iter()
                .map(|(t, f)| (t.to_owned(), f))
                .collect(),
            readers: HashMap::new(),
            registry: None,
        }
    }

    pub fn registry(&self) -> Option<&Registry> {
        self.registry.as_ref()
    }

    /// `topic`'s format (JSON unless `formats` says otherwise).
    pub fn format(&self, topic: &str) -> Format {
        self.by_topic.get(topic).copied().unwrap_or(Format::Json)
    }

    /// The schemas `payloads` name, from the cache or the registry; why
    /// not when the registry does not answer (an outage: the caller waits
    /// it out under [`REGISTRY`]). Any payload in the wire
    /// format counts, whatever its topic (a retry topic's record is read
    /// in its original topic's format).
    pub async fn schemas<'a>(
        &self,
        payloads: impl IntoIterator<Item = Option<&'a [u8]>>,
    ) -> Result<Schemas, String> {
        let mut found = Schemas::default();
        let Some(registry) = &self.registry else {
            return Ok(found);
        };
        let mut wanted: Vec<u32> = Vec::new();
        for payload in payloads {
            // The id is the same bytes with or without Protobuf indexes.
            let Some(Ok(framed)) = payload.map(|p| wire::split(p, false)) else {
                continue;
            };
            if !wanted.contains(&framed.schema_id) {
                wanted.push(framed.schema_id);
            }
        }
        for id in wanted {
            match registry.get(id).await {
                Err(FetchError::Unavailable(e)) => return Err(e),
                got => {
                    found.0.insert(id, got);
                }
            }
        }
        Ok(found)
    }

    /// `payload` of a record of `topic`, as the pipeline reads it (its
    /// schema among those [`Formats::schemas`] gathered for its batch).
    pub fn readable(&self, topic: &str, payload: Option<&[u8]>, schemas: &Schemas) -> Readable {
        let format = self.format(topic);
        if format == Format::Json {
            return Readable::AsIs;
        }
        let failed = |kind: &'static str, message: String| {
            Readable::Failed(Failure::permanent(Stage::Decode, kind, message))
        };
        let Some(payload) = payload else {
            return failed(WIRE_FORMAT, "empty payload (tombstone)".into());
        };
        let framed = match wire::split(payload, format == Format::Protobuf) {
            Ok(framed) => framed,
            Err(e) => return failed(WIRE_FORMAT, e.to_string()),
        };
        let schema = match schemas.0.get(&framed.schema_id) {
            Some(Ok(schema)) => Arc::clone(schema),
            Some(Err(e)) => return failed(UNKNOWN_SCHEMA, e.to_string()),
            None if self.registry.is_none() => {
                return failed(
                    UNKNOWN_SCHEMA,
                    "no schema_registry.url is configured".into(),
                )
            }
            // Every schema a batch names is gathered before it is decoded.
            None => {
                return failed(
                    UNKNOWN_SCHEMA,
                    format!("schema {} was not fetched", framed.schema_id),
                )
            }
        };
        let Some(wanted) = schema_kind(format) else {
            return Readable::AsIs;
        };
        if schema.kind != wanted {
            return failed(
                UNKNOWN_SCHEMA,
                format!(
                    "schema {} is {}, but topic {topic} carries {}",
                    schema.id,
                    schema.kind.as_str(),
                    wanted.as_str()
                ),
            );
        }
        match schema.decode(&framed.indexes, framed.body, self.readers.get(topic)) {
            Ok(json) => Readable::Decoded { json, schema },
            Err(e) => failed(SCHEMA_MISMATCH, e.0),
        }
    }
}

/// The kind of schema a topic of `format` is written with; none for JSON.
pub(crate) fn schema_kind(format: Format) -> Option<schema::Kind> {
    match format {
        Format::Avro => Some(schema::Kind::Avro),
        Format::Protobuf => Some(schema::Kind::Protobuf),
        Format::JsonSchema => Some(schema::Kind::JsonSchema),
        Format::Json => None,
    }
}
