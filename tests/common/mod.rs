//! Test harness: real PostgreSQL and Redis (from `dev/services.sh`, found
//! through TEST_POSTGRES_ADMIN_URL and TEST_REDIS_URL), and a real Kafka
//! protocol peer (librdkafka's mock cluster, in this process). Each test gets
//! its own database, topic and consumer group.
#![allow(dead_code)]

mod app;
mod assertions;
mod kafka;
mod services;

// Every `common::name` call site keeps compiling; a test binary that uses
// none of a module's items must not warn about it.
#[allow(unused_imports)]
pub use app::*;
#[allow(unused_imports)]
pub use assertions::*;
#[allow(unused_imports)]
pub use kafka::*;
#[allow(unused_imports)]
pub use services::*;
