//! The registry of handler kinds: every kind's [`Spec`] (its name in the
//! configuration and the ledger, event types, payload shape and path), the
//! [`Task`] each one makes of a record, and the two places the pipeline
//! dispatches on the kind: [`decode()`] (a record's body into its task) and
//! [`write()`] (the stored tasks' SQL, on the outcome writer's transaction).
//! What a kind does is in its folder; adding a kind is its folder plus its
//! lines here (an arm in [`HandlerKind`], [`Task`], [`decode()`] and
//! [`write()`]).
//!
//! Low in the layering: the configuration, the decoder, the outcome writer
//! and the metrics read it, and it imports nothing of theirs.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::spec::{Body, Spec};
use super::{audit, domain, http, transactions};
use crate::failure::Failure;

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
    /// Forwarded to a downstream URL ([`crate::process::forward`], through [`crate::delivery`]).
    Http,
    /// Nothing to apply: the audit trail is the whole record ([`crate::handlers::audit`]).
    Audit,
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
            HandlerKind::Transactions => &transactions::SPEC,
            HandlerKind::Domain => &domain::SPEC,
            HandlerKind::Http => &http::SPEC,
            HandlerKind::Audit => &audit::SPEC,
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

/// Where a route sends an event: the handler kind, and for kinds whose
/// routes carry state of their own (an http route's URL and rate limit),
/// which one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handler {
    pub kind: HandlerKind,
    /// For an http route: its index among the http routes, in `routes`
    /// order (`delivery::Endpoints` holds them); 0 for other kinds.
    pub route: usize,
}

/// What a processor has to apply: one variant per kind that decodes a
/// payload of its own.
#[derive(Debug)]
pub enum Task {
    Transaction(transactions::TransactionChange),
    Domain(domain::DomainChange),
    /// The record as it is, for a handler that takes any payload
    /// (forwarded over HTTP, or recorded only).
    Pass {
        message_id: Uuid,
        handler: Handler,
    },
}

impl Task {
    pub fn message_id(&self) -> Uuid {
        match self {
            Task::Transaction(c) => c.message_id,
            Task::Domain(c) => c.message_id,
            Task::Pass { message_id, .. } => *message_id,
        }
    }

    pub fn kind(&self) -> HandlerKind {
        match self {
            Task::Transaction(_) => HandlerKind::Transactions,
            Task::Domain(_) => HandlerKind::Domain,
            Task::Pass { handler, .. } => handler.kind,
        }
    }
}

/// The task `handler`'s kind makes of `body` (read at `now`).
pub fn decode(
    handler: Handler,
    body: &Body<'_>,
    message_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Task, Failure> {
    match handler.kind {
        HandlerKind::Transactions => {
            transactions::decode(body, message_id, now).map(Task::Transaction)
        }
        HandlerKind::Domain => domain::decode(body, message_id).map(Task::Domain),
        HandlerKind::Http | HandlerKind::Audit => Ok(Task::Pass {
            message_id,
            handler,
        }),
    }
}

/// Writes the stored effects of `tasks` (ids new to the ledger, in offset
/// order) on the outcome writer's transaction. The audit kind's and a
/// delivery's only write is their ledger row.
pub async fn write(tx: &Transaction<'_>, tasks: &[&Task]) -> Result<(), tokio_postgres::Error> {
    let mut changes: Vec<&transactions::TransactionChange> = Vec::new();
    for task in tasks {
        match task {
            Task::Transaction(change) => changes.push(change),
            Task::Domain(change) => domain::sql::apply(tx, change).await?,
            Task::Pass { .. } => {}
        }
    }
    transactions::sql::write(tx, &changes).await
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
