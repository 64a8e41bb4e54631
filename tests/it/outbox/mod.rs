//! The transactional outbox relay.

mod encoded;
mod relay;
