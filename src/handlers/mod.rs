//! The handler kinds, one folder each, holding what is the kind's own:
//! its [`Spec`](spec::Spec), decoding (`event.rs`), folding, and SQL
//! (`sql.rs`). [`registry`] lists them and is where the pipeline
//! dispatches on a kind. How a processor carries out a batch of any kind
//! is [`crate::process`]; how an outcome becomes durable is
//! [`crate::outcome`].
//!
//! - [`transactions`]: transaction events → the `transactions` projection.
//! - [`domain`]: domain envelopes → `users`, `orders`, `payments`,
//!   `inventory`.
//! - [`http`]: any record, forwarded to a downstream URL.
//! - [`audit`]: any record, recorded in the audit trail only.
//! - [`money`]: exact amounts, shared by the kinds that carry them.

pub mod audit;
pub mod domain;
pub mod http;
pub mod money;
pub mod registry;
pub mod spec;
pub mod transactions;
