//! What an http route sends for a record of a schema topic: by default the
//! JSON the pipeline read it as (`application/json`), or with
//! `forward = "original"` the record's own bytes, in the wire format, with
//! their format's content type. A JSON topic's record goes as it is.

use super::{schema::Kind, wire, Format, Formats};

/// A request body and its content type.
pub struct Body {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// Why a body could not be made.
pub enum NotReady {
    /// The registry does not answer: wait, then try again.
    Outage(String),
    /// The record does not decode (the pipeline decoded it, so a schema
    /// that changed meanwhile under its id, which a registry never does).
    Unreadable(String),
}

const JSON: &str = "application/json";

impl Formats {
    /// The body an http route sends for `payload`, read from `topic`.
    pub async fn body(
        &self,
        topic: &str,
        payload: Option<&[u8]>,
        original: bool,
    ) -> Result<Body, NotReady> {
        let bytes = payload.unwrap_or_default();
        let format = self.format(topic);
        let as_is = |content_type| Body {
            bytes: bytes.to_vec(),
            content_type,
        };
        match format {
            Format::Json => return Ok(as_is(JSON)),
            _ if original => {
                return Ok(as_is(match format {
                    Format::Avro => "avro/binary",
                    Format::Protobuf => "application/x-protobuf",
                    _ => "application/vnd.schemaregistry.v1+json",
                }))
            }
            _ => {}
        }
        let registry = self
            .registry()
            .ok_or_else(|| NotReady::Unreadable("no schema_registry.url".into()))?;
        let framed = wire::split(bytes, format == Format::Protobuf)
            .map_err(|e| NotReady::Unreadable(e.to_string()))?;
        let schema = registry.get(framed.schema_id).await.map_err(|e| match e {
            super::registry::FetchError::Unavailable(e) => NotReady::Outage(e),
            other => NotReady::Unreadable(other.to_string()),
        })?;
        if schema.kind == Kind::JsonSchema {
            return Ok(Body {
                bytes: framed.body.to_vec(),
                content_type: JSON,
            });
        }
        let json = schema
            .decode(&framed.indexes, framed.body, self.readers.get(topic))
            .map_err(|e| NotReady::Unreadable(e.0))?;
        Ok(Body {
            bytes: json,
            content_type: JSON,
        })
    }
}

/// The schema a record was written with, as the message view shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SchemaRef {
    pub id: u32,
    /// `avro`, `protobuf` or `json-schema`.
    pub format: &'static str,
    pub subject: Option<String>,
    pub version: Option<i32>,
}

impl Formats {
    /// A schema topic's record decoded to JSON for reading, with its
    /// schema; none for a JSON topic, or when it cannot be decoded now
    /// (the registry down, a record that never decoded, one written with
    /// a schema of another kind than its topic's).
    pub async fn readable_json(&self, topic: &str, payload: &[u8]) -> Option<(Vec<u8>, SchemaRef)> {
        let format = self.format(topic);
        let wanted = super::schema_kind(format)?;
        let framed = wire::split(payload, format == Format::Protobuf).ok()?;
        let schema = self.registry()?.get(framed.schema_id).await.ok()?;
        if schema.kind != wanted {
            return None;
        }
        let json = schema
            .decode(&framed.indexes, framed.body, self.readers.get(topic))
            .ok()?;
        Some((
            json,
            SchemaRef {
                id: schema.id,
                format: schema.kind.as_str(),
                subject: schema.subject.clone(),
                version: schema.version,
            },
        ))
    }
}
