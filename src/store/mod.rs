//! PostgreSQL: the pool, migrations, the audit trail's entries (and its
//! hash chain encoding, `chain`), reads of the projections and the trail.
//! Every statement goes through diesel with bound parameters, except the
//! outcome writer's ([`crate::outcome`]), on tokio-postgres with bound
//! parameters and a binary COPY.

pub(crate) mod audit;
pub mod chain;
pub mod explorer;
pub(crate) mod message_projection;
pub mod migrate;
pub mod pool;
pub(crate) mod projection;
pub(crate) mod read;
pub mod redelivery;
pub(crate) mod schema;
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
