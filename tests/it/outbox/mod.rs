//! The transactional outbox relay.

mod relay;
