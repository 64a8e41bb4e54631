//! What a handler kind declares about itself ([`Spec`]: name, event types,
//! payload shape, path) and what it is handed to decode ([`Body`]): the
//! vocabulary every kind's folder and the registry share.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::failure::Failure;

/// The payload shape a kind decodes before its batch is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// `event_type` + `transaction` + `timestamp`.
    TransactionEvent,
    /// `eventId` + `type` + `timestamp` + `data`.
    DomainEnvelope,
    /// Either shape: the record is taken as it is.
    Any,
}

/// How a kind's batch is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Inside the PostgreSQL transaction that writes the ledger rows, the
    /// whole batch at once (`handlers/stored.rs`).
    Stored,
    /// One message at a time to a downstream, each ledger row written once
    /// it is delivered ([`crate::process::forward`], through [`crate::delivery`]).
    Forwarded,
}

/// What a kind is, in one place.
pub struct Spec {
    /// Its name in `routes.handler` and in the `applied_messages` ledger.
    pub name: &'static str,
    /// The event types it applies; empty: any.
    pub event_types: &'static [&'static str],
    pub payload: Payload,
    pub path: Path,
    /// Whether its routes take a `url`.
    pub takes_url: bool,
}

/// A record's body as the decoder found it: the shallow view's fields a
/// kind may need (its shape already matched the kind's [`Payload`]).
pub struct Body<'a> {
    pub event_type: &'a str,
    pub timestamp: Option<&'a str>,
    /// A transaction event's `transaction`.
    pub transaction: Option<&'a RawValue>,
    /// A domain envelope's `data`.
    pub data: Option<&'a RawValue>,
}

impl Body<'_> {
    /// The `timestamp` field, RFC 3339.
    pub fn timestamp(&self) -> Result<DateTime<Utc>, Failure> {
        let timestamp = self
            .timestamp
            .ok_or_else(|| Failure::schema("missing field `timestamp`"))?;
        DateTime::parse_from_rfc3339(timestamp)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                Failure::schema(format!(
                    "field `timestamp`: `{timestamp}` is not RFC 3339: {e}"
                ))
            })
    }
}
