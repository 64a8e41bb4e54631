//! PostgreSQL: the pool, migrations, the audit trail (and its hash chain
//! encoding, [`chain`]) and the projections.
//! Every statement goes through diesel with bound parameters, except the
//! audit trail's binary COPY (`audit_writer`), whose values travel in
//! PostgreSQL's binary format.

pub mod audit;
pub mod audit_writer;
pub mod chain;
pub mod domain_projection;
pub mod explorer;
pub mod message_projection;
pub mod migrate;
pub mod pool;
pub mod projection;
pub mod read;
pub mod redelivery;
pub mod schema;
pub mod search;

pub use pool::PgPool;

/// A PostgreSQL operation that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("postgres connection unavailable: {0}")]
    Pool(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}
