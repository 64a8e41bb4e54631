//! What every area's tests stand on: a test's own services and names
//! (`env`), private PostgreSQL and Redis servers, Kafka, HTTP calls to a
//! running custodian, the queries tests read the database with, custodian
//! and brokers as child processes, a scriptable downstream, and polling.

pub mod brokers;
pub mod dead_letter;
pub mod downstream;
mod env;
mod http;
mod kafka;
pub mod process;
mod queries;

pub use env::*;
pub use http::*;
pub use kafka::*;
pub use queries::*;
