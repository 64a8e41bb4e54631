//! Stable message ids: the key of the audit trail and of idempotency.
//!
//! In order of preference:
//! 1. the `custodian-message-id` header, when custodian signed it (set on
//!    replayed records, so a replay continues the original lifecycle; see
//!    `steering`: an unsigned one is ignored);
//! 2. the envelope's `eventId` (domain envelopes), taken as is when it is a UUID;
//! 3. for transaction events, a stable hash of transaction id, event
//!    type and timestamp (a create and a later update of one transaction are
//!    two messages, a redelivery of either is the same one);
//! 4. otherwise a stable hash of topic, partition and offset.
//!
//! The hashes are UUID v5 (SHA-1 in a custodian namespace), so every id is a
//! UUID and the same input always yields the same id, on any instance.

use uuid::Uuid;

/// The header a replayed record carries its original id in.
pub const MESSAGE_ID_HEADER: &str = "custodian-message-id";

/// custodian's UUID v5 namespace (itself a v5 id of "custodian" in the URL
/// namespace, fixed forever: changing it would change every derived id).
const NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_5a2e_93d4_5b7a_8c1e_2f40_6d9b_3a71);

pub fn from_event_id(event_id: &str) -> Uuid {
    Uuid::parse_str(event_id)
        .unwrap_or_else(|_| Uuid::new_v5(&NAMESPACE, format!("event-id:{event_id}").as_bytes()))
}

pub fn for_transaction_event(transaction_id: &str, event_type: &str, timestamp: &str) -> Uuid {
    let name = format!("{transaction_id}:{event_type}:{timestamp}");
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

pub fn for_position(topic: &str, partition: i32, offset: i64) -> Uuid {
    let name = format!("{topic}:{partition}:{offset}");
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = for_transaction_event("t1", "transaction.created", "2024-01-01T12:00:00Z");
        let b = for_transaction_event("t1", "transaction.created", "2024-01-01T12:00:00Z");
        let c = for_transaction_event("t1", "transaction.updated", "2024-01-01T12:00:00Z");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(for_position("t", 0, 1), for_position("t", 1, 0));
    }

    #[test]
    fn uuid_event_ids_are_kept() {
        let id = "550e8400-e29b-41d4-a716-446655440001";
        assert_eq!(from_event_id(id).to_string(), id);
        assert_eq!(from_event_id("not-a-uuid"), from_event_id("not-a-uuid"));
    }
}
