//! Flow control: an operator's pause of a topic, a partition or an http
//! route, kept in PostgreSQL and honoured by every instance; a circuit
//! breaker per http route; stalled partitions flagged.
//!
//! - [`pauses`]: taking and resuming a pause (chained FLOW_PAUSED,
//!   FLOW_RESUMED), reading the active ones.
//! - [`active`]: the pauses in force as this instance sees them, read
//!   every `flow.poll_interval`; partition actors wait on them.
//! - [`breaker`]: one route's circuit breaker, as pure state.
//! - [`gate`]: what a delivery checks first: the route's pause and breaker.
//! - [`record`]: each breaker change in the audit trail.

pub mod active;
pub mod breaker;
pub mod gate;
pub mod pauses;
pub mod record;

pub use active::Flow;
