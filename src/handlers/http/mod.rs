//! The `http` kind (seeds 001 and 002): any record, forwarded byte for
//! byte to its route's downstream URL. It decodes nothing and has no SQL
//! of its own: its ledger row and delivery record are written by the
//! outcome writer. Forwarding a batch is `process/forward.rs`; one request
//! and its answer, and each route's endpoint, are [`crate::delivery`];
//! what follows a failed delivery is [`crate::retry`].

use crate::handlers::spec::{Path, Payload, Spec};

pub const SPEC: Spec = Spec {
    name: "http",
    event_types: &[],
    payload: Payload::Any,
    path: Path::Forwarded,
    takes_url: true,
};
