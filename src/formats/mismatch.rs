//! Why a body does not fit its schema (error kind `schema_mismatch`), in
//! either direction: decoding a record, or encoding JSON for a producer.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Mismatch(pub String);
