//! A registry schema compiled for its format, and the two ways through it:
//! a record's body to the JSON a handler kind takes (decode), and JSON to
//! a body (encode, for `produce` and the outbox relay).

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

/// A schema's format, as the registry names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Avro,
    Protobuf,
    JsonSchema,
}

impl Kind {
    /// From the registry's `schemaType` (absent: Avro).
    pub fn from_registry(schema_type: Option<&str>) -> Option<Kind> {
        match schema_type {
            None | Some("AVRO") => Some(Kind::Avro),
            Some("PROTOBUF") => Some(Kind::Protobuf),
            Some("JSON") => Some(Kind::JsonSchema),
            Some(_) => None,
        }
    }

    /// The registry's `schemaType` (Avro sends none).
    pub fn registry_type(self) -> Option<&'static str> {
        match self {
            Kind::Avro => None,
            Kind::Protobuf => Some("PROTOBUF"),
            Kind::JsonSchema => Some("JSON"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Avro => "avro",
            Kind::Protobuf => "protobuf",
            Kind::JsonSchema => "json-schema",
        }
    }
}

/// A schema from the registry, ready to use.
#[derive(Debug)]
pub struct Schema {
    pub id: u32,
    pub kind: Kind,
    /// Its subject and version, when the registry says.
    pub subject: Option<String>,
    pub version: Option<i32>,
    pub compiled: Compiled,
}

/// The compiled form of each format.
pub enum Compiled {
    Avro(apache_avro::Schema),
    Protobuf(DescriptorPool),
    JsonSchema(Box<jsonschema::Validator>),
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compiled::Avro(_) => "Avro",
            Compiled::Protobuf(_) => "Protobuf",
            Compiled::JsonSchema(_) => "JsonSchema",
        })
    }
}

/// The file name a Protobuf schema is parsed under.
const PROTO_FILE: &str = "schema.proto";

impl Compiled {
    /// Compiles `text` as a schema of `kind`; why not, if it cannot.
    pub fn compile(kind: Kind, text: &str) -> Result<Compiled, String> {
        match kind {
            Kind::Avro => apache_avro::Schema::parse_str(text)
                .map(Compiled::Avro)
                .map_err(|e| e.to_string()),
            Kind::Protobuf => {
                let file = protox_parse::parse(PROTO_FILE, text).map_err(|e| e.to_string())?;
                let mut pool = DescriptorPool::new();
                pool.add_file_descriptor_proto(file)
                    .map_err(|e| e.to_string())?;
                Ok(Compiled::Protobuf(pool))
            }
            Kind::JsonSchema => {
                let schema: serde_json::Value =
                    serde_json::from_str(text).map_err(|e| e.to_string())?;
                jsonschema::validator_for(&schema)
                    .map(|v| Compiled::JsonSchema(Box::new(v)))
                    .map_err(|e| e.to_string())
            }
        }
    }
}

pub use super::mismatch::Mismatch;

/// The Protobuf message type `indexes` names in `pool`'s file.
pub fn message_type(pool: &DescriptorPool, indexes: &[i32]) -> Result<MessageDescriptor, Mismatch> {
    let file = pool
        .get_file_by_name(PROTO_FILE)
        .ok_or_else(|| Mismatch("the schema has no file".into()))?;
    let missing = || Mismatch(format!("no message type at indexes {indexes:?}"));
    let (&first, rest) = indexes.split_first().ok_or_else(missing)?;
    let mut message = file
        .messages()
        .nth(usize::try_from(first).map_err(|_| missing())?)
        .ok_or_else(missing)?;
    for &i in rest {
        let at = usize::try_from(i).map_err(|_| missing())?;
        let child = message.child_messages().nth(at).ok_or_else(missing)?;
        message = child;
    }
    Ok(message)
}

impl Schema {
    /// `body` (after the wire-format header) as JSON text; `reader` is the
    /// Avro reader schema to resolve into, if the topic names one.
    pub fn decode(
        &self,
        indexes: &[i32],
        body: &[u8],
        reader: Option<&apache_avro::Schema>,
    ) -> Result<Vec<u8>, Mismatch> {
        match &self.compiled {
            Compiled::Avro(writer) => {
                let mut rest = body;
                let mismatch = |e: apache_avro::Error| {
                    Mismatch(format!(
                        "the Avro body does not match schema {}: {e}",
                        self.id
                    ))
                };
                let value = apache_avro::reader::datum::GenericDatumReader::builder(writer)
                    .build()
                    .map_err(mismatch)?
                    .read_value(&mut rest)
                    .map_err(mismatch)?;
                if !rest.is_empty() {
                    return Err(Mismatch(format!(
                        "{} bytes left after the Avro body of schema {}",
                        rest.len(),
                        self.id
                    )));
                }
                let written = super::avro_json::Names::of(writer);
                let (value, shape, names) = match reader {
                    Some(reader) => {
                        let read = super::avro_json::Names::of(reader);
                        let value =
                            super::avro_json::evolve(value, writer, reader, (&written, &read))?;
                        (value, reader, read)
                    }
                    None => (value, writer, written),
                };
                super::avro_json::render(&value, shape, &names).map(String::into_bytes)
            }
            Compiled::Protobuf(pool) => {
                let descriptor = message_type(pool, indexes)?;
                let message = DynamicMessage::decode(descriptor, body).map_err(|e| {
                    Mismatch(format!(
                        "the Protobuf body does not match schema {}: {e}",
                        self.id
                    ))
                })?;
                let options = prost_reflect::SerializeOptions::new()
                    .use_proto_field_name(true)
                    .stringify_64_bit_integers(false);
                let mut out = Vec::new();
                let mut serializer = serde_json::Serializer::new(&mut out);
                message
                    .serialize_with_options(&mut serializer, &options)
                    .map_err(|e| Mismatch(e.to_string()))?;
                Ok(out)
            }
            Compiled::JsonSchema(validator) => {
                let value: serde_json::Value = serde_json::from_slice(body)
                    .map_err(|e| Mismatch(format!("the body is not JSON: {e}")))?;
                if let Some(error) = validator.iter_errors(&value).next() {
                    return Err(Mismatch(format!(
                        "the body does not match JSON schema {} at {}: {error}",
                        self.id,
                        error.instance_path()
                    )));
                }
                // The body itself: its numbers keep their exact text.
                Ok(body.to_vec())
            }
        }
    }

    /// `json` as a body of this schema (Protobuf: its first message type);
    /// the body and its Protobuf indexes.
    pub fn encode(
        &self,
        json: &serde_json::Value,
    ) -> Result<(Vec<u8>, Option<Vec<i32>>), Mismatch> {
        match &self.compiled {
            Compiled::Avro(schema) => {
                let names = super::avro_json::Names::of(schema);
                let value = super::avro_json::from_json(json, schema, &names)
                    .map_err(|e| Mismatch(format!("does not fit Avro schema {}: {e}", self.id)))?;
                apache_avro::writer::datum::GenericDatumWriter::builder(schema)
                    .build()
                    .and_then(|w| w.write_value_to_vec(value))
                    .map(|body| (body, None))
                    .map_err(|e| Mismatch(e.to_string()))
            }
            Compiled::Protobuf(pool) => {
                let descriptor = message_type(pool, &[0])?;
                let message = DynamicMessage::deserialize_with_options(
                    descriptor,
                    json,
                    &prost_reflect::DeserializeOptions::new(),
                )
                .map_err(|e| Mismatch(format!("does not fit Protobuf schema {}: {e}", self.id)))?;
                Ok((prost::Message::encode_to_vec(&message), Some(vec![0])))
            }
            Compiled::JsonSchema(validator) => {
                if let Some(error) = validator.iter_errors(json).next() {
                    return Err(Mismatch(format!(
                        "does not fit JSON schema {}: {error}",
                        self.id
                    )));
                }
                serde_json::to_vec(json)
                    .map(|body| (body, None))
                    .map_err(|e| Mismatch(e.to_string()))
            }
        }
    }
}
