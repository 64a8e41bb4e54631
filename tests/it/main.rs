//! custodian's integration tests: one binary, one module per area, each
//! test against real PostgreSQL and Redis (`dev/services.sh`) and a Kafka
//! protocol peer (librdkafka's mock cluster in this process, or a broker
//! process of its own). Each test has its own database, topic, consumer
//! group and dead-letter key prefix, so tests share this process safely;
//! a test whose custodian must have its process-wide metrics to itself
//! starts it as a child process (`support::process`).
//!
//! - `pipeline`: records in, durable outcomes out (decoding, the seed
//!   events, exact money, one outcome per message, the producer command).
//! - `recovery`: SIGKILL and restart, rebalances, bounded shutdown, outages.
//! - `audit`: the provable trail (chains, checkpoints, verify, reconcile)
//!   and the message explorer.
//! - `dlq`: managing dead letters, bulk replay jobs.
//! - `hostile`: what hostile producers and API clients found.
//! - `delivery`: HTTP delivery to downstreams, key-ordered concurrency.
//! - `retry`: in place, the deferred schedule, retry topics.
//! - `api`: the token, the HTTP edges, the OpenAPI contract, search.
//! - `console`: the operator's console in headless Chromium.
//! - `outbox`: the transactional outbox relay.
//! - `status`: `GET /status`, `custodian status`, metrics and logs.
//! - `formats`: Avro, Protobuf and JSON Schema through a real schema
//!   registry (Karapace).
//! - `faults`: the fault tier, custodian and brokers as processes killed
//!   and restarted; its scenarios run one at a time.
//! - `support`: the helpers every area uses.

mod api;
mod audit;
mod console;
mod delivery;
mod dlq;
mod faults;
mod flow;
mod formats;
mod hostile;
mod outbox;
mod pipeline;
mod recovery;
mod retry;
mod status;
mod support;
mod traces;
