//! What every area's tests stand on:
//! - `env`: a test's own database, Redis key prefix, topic and group, its
//!   settings, and database set-up (statements, locks held open);
//! - `servers`: private PostgreSQL and Redis servers to stop and restart;
//! - `kafka`: producing records, committed offsets and watermarks;
//! - `http`: calls to a running custodian with the test token;
//! - `queries`: what tests read from PostgreSQL, by name (`env.db()`);
//! - `dlq`: the dead-letter entries Redis holds;
//! - `process`: custodian as a child process, the one launcher;
//! - `brokers`: tansu and `custodian dev-broker` as processes;
//! - `downstream`: a scriptable HTTP downstream;
//! - `dead_letter`: a prepared record's dead letter, shared with the fuzzer;
//! - `wait`: polling until something holds.

pub mod brokers;
pub mod dead_letter;
mod dlq;
pub mod downstream;
mod env;
mod http;
pub mod http_thread;
mod kafka;
pub mod otlp;
pub mod process;
mod queries;
mod servers;
mod wait;

pub use env::*;
pub use http::*;
pub use kafka::*;
pub use queries::*;
pub use servers::*;
pub use wait::*;
