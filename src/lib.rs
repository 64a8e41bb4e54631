//! custodian: an auditable Kafka stream processor. Every message ends either
//! processed, with an append-only audit trail in PostgreSQL, or parked in a
//! Redis dead-letter queue with everything needed to replay it; offsets are
//! committed only past outcomes that are durable.
//!
//! The map of the crate:
//! - [`config`]: the settings tree (TOML + `CUSTODIAN_` env), validated at start.
//! - [`app`]: start-up and shutdown order; `Running` for tests.
//! - [`shutdown`]: the shutdown bound: bounded final steps on detached
//!   threads, and the watchdog behind them.
//! - [`kafka`]: consumer settings, rebalance context, the owned `Envelope`,
//!   the per-partition offset tracker, committing offsets (the one place),
//!   the event thread, closing the consumer, the dev broker.
//! - `keyed`: key-ordered concurrency: lanes per key, several at once.
//! - `actors`: Supervisor, partition, enricher, processor, dead-letter and
//!   auditor actors, and the Supervisor's control messages.
//! - `stages`: the data path's messages between the actors, and the
//!   `Handoff` that wires them (the processing and the retry topic's
//!   publisher acknowledge through it too).
//! - [`pipeline`]: a record's shape, route, message id and signed headers,
//!   then its kind's decoder: plain functions, no actors, no I/O.
//! - [`outcome`]: the one place an outcome becomes durable: effect, ledger,
//!   schedule, delivery record and chained audit entries in one
//!   transaction, then the dead-letter push, then the acknowledgement.
//! - [`store`]: PostgreSQL pools, migrations, audit entries, reads.
//! - `handlers`: the handler kinds, one folder each (its spec, decoding,
//!   folding and SQL), and the registry that dispatches on them.
//! - `process`: how a processor carries out a batch: stored kinds
//!   decided, http deliveries made (their writes go to [`outcome`]).
//! - [`failure`]: the failure classes every stage reports (permanent,
//!   transient, a dependency down).
//! - `delivery`: http delivery to downstreams: each route's endpoint
//!   (URL, timeout, rate limit), one request and its answer classified, the
//!   delivery records.
//! - `retry`: what follows a failed attempt, three ways compared in its
//!   module doc: in place with backoff, the deferred schedule in PostgreSQL
//!   (and its worker), retry topics.
//! - [`dlq`]: the Redis dead-letter entry, its Lua scripts, and the operator
//!   actions on it (list, replay, discard) shared by HTTP and the CLI,
//!   counts by error kind, bulk replays run as jobs.
//! - [`trail`]: the provable audit trail: hash chains, signed checkpoints,
//!   `audit verify` and `audit reconcile`.
//! - [`api`]: health, readiness, metrics (open), the token-guarded API and
//!   the console.
//! - [`telemetry`]: tracing setup, and the typed events that log and count,
//!   with their metrics, by area (kafka, pipeline, retry, delivery, dlq,
//!   trail, outbox, api); `text`: cutting outside text to a log line's size.
//! - `wait`: waiting until a dependency is back (one helper for every
//!   "try until it answers" loop), and the capped, jittered backoff.
//! - `health`: small shared pieces.
//! - [`synth`], [`produce`]: synthetic transaction events and the producer command.
//! - [`downstream`]: the mock downstream service for demos and tests.
//! - [`status`]: the partition registry behind `GET /status`, what lag means
//!   (computed once), the chart samples of the console's overview, the
//!   `custodian status` table.
//! - [`masking`]: personal payload fields masked in the API's answers
//!   (JSON pointers per handler kind or topic, keyed fingerprints), the
//!   projection columns they become, search text as a viewer may see it.
//! - [`operators`]: people with credentials of their own (name, role,
//!   token), `custodian operator …`, checked by the API's authorisation.
//! - [`flow`]: flow control: operators' pauses of a topic, partition or
//!   http route (kept in PostgreSQL, honoured by every instance), a circuit
//!   breaker per http route, stalled partitions.
//! - [`otel`]: OpenTelemetry traces (off unless `telemetry.otlp_endpoint`):
//!   the exporter and sampler, trace context in headers, a record's span.
//! - [`relay`]: the transactional outbox relay (PostgreSQL `outbox` → Kafka,
//!   audited MESSAGE_PUBLISHED), `custodian relay` or inside `run`.

pub(crate) mod actors;
pub mod api;
pub mod app;
pub mod approvals;
pub mod config;
pub(crate) mod delivery;
pub mod dlq;
pub mod downstream;
pub mod failure;
pub mod flow;
pub mod formats;
pub(crate) mod handlers;
pub(crate) mod health;
pub mod identity;
pub mod kafka;
pub(crate) mod keyed;
pub mod masking;
pub mod operators;
pub mod otel;
pub mod outcome;
pub mod pipeline;
pub(crate) mod process;
pub mod produce;
pub mod relay;
pub(crate) mod retry;
pub mod shutdown;
pub(crate) mod stages;
pub mod status;
pub mod store;
pub mod synth;
pub mod telemetry;
pub(crate) mod text;
pub mod trail;
pub(crate) mod wait;
