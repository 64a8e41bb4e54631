//! The `audit` kind: any record, recorded in the audit trail only. Nothing
//! to decode or apply: its ledger row and audit entries are the whole
//! record (free-text messages, `custodian produce --text`, go here by
//! default).

use crate::handlers::spec::{Path, Payload, Spec};

pub const SPEC: Spec = Spec {
    name: "audit",
    event_types: &[],
    payload: Payload::Any,
    path: Path::Stored,
    takes_url: false,
};
