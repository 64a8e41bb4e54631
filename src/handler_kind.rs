//! The handler kinds, and what each one takes: its name in the
//! configuration and the ledger, the event types it accepts, the payload
//! shape it decodes, and the path its batches take. A leaf (it imports
//! nothing of custodian's): the configuration, the decoder, the metrics and
//! the handlers all read this one table, so none of them imports another
//! for it. What each kind does is in its file under [`crate::handlers`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// The transaction event types, in `pipeline::transaction::Action` order:
/// the one list of them.
pub const TRANSACTION_EVENT_TYPES: [&str; 3] = [
    "transaction.created",
    "transaction.updated",
    "transaction.deleted",
];

/// The event types the domain handler applies.
pub const DOMAIN_EVENT_TYPES: [&str; 4] = [
    "UserCreated",
    "OrderPlaced",
    "PaymentSettled",
    "InventoryAdjusted",
];

/// The event type of a free-text message (routed to the `audit` handler by
/// default; `custodian produce --text` writes it).
pub const TEXT_MESSAGE_TYPE: &str = "Message";

/// What applies an event (`routes.handler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HandlerKind {
    /// Transaction events → the `transactions` projection ([`crate::handlers::transactions`]).
    Transactions,
    /// Domain envelopes → `users`, `orders`, `payments`, `inventory` ([`crate::handlers::domain`]).
    Domain,
    /// Forwarded to a downstream URL ([`crate::handlers::http`], through [`crate::delivery`]).
    Http,
    /// Nothing to apply: the audit trail is the whole record ([`crate::handlers::audit`]).
    Audit,
}

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
    /// it is delivered ([`crate::handlers::http`], through [`crate::delivery`]).
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

impl HandlerKind {
    pub const ALL: [HandlerKind; 4] = [
        HandlerKind::Transactions,
        HandlerKind::Domain,
        HandlerKind::Http,
        HandlerKind::Audit,
    ];

    pub fn spec(self) -> &'static Spec {
        match self {
            HandlerKind::Transactions => &Spec {
                name: "transactions",
                event_types: &TRANSACTION_EVENT_TYPES,
                payload: Payload::TransactionEvent,
                path: Path::Stored,
                takes_url: false,
            },
            HandlerKind::Domain => &Spec {
                name: "domain",
                event_types: &DOMAIN_EVENT_TYPES,
                payload: Payload::DomainEnvelope,
                path: Path::Stored,
                takes_url: false,
            },
            HandlerKind::Http => &Spec {
                name: "http",
                event_types: &[],
                payload: Payload::Any,
                path: Path::Forwarded,
                takes_url: true,
            },
            HandlerKind::Audit => &Spec {
                name: "audit",
                event_types: &[],
                payload: Payload::Any,
                path: Path::Stored,
                takes_url: false,
            },
        }
    }

    /// The name written to the configuration and the idempotency ledger.
    pub fn name(self) -> &'static str {
        self.spec().name
    }
}

impl fmt::Display for HandlerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::HandlerKind;

    #[test]
    fn names_round_trip_through_serde() {
        for kind in HandlerKind::ALL {
            let json = serde_json::to_value(kind).expect("serialises");
            assert_eq!(json, serde_json::json!(kind.name()));
            let back: HandlerKind = serde_json::from_value(json).expect("deserialises");
            assert_eq!(back, kind);
        }
        assert!(serde_json::from_value::<HandlerKind>(serde_json::json!("database")).is_err());
    }
}
