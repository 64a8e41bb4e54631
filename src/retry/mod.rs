//! What happens after a failed attempt: three mechanisms, one home.
//!
//! | | [`in_place`] | [`deferred`] | [`topic`] |
//! |---|---|---|---|
//! | config | `retry.*` (every route) | `retry = "deferred"` (http routes) | `retry = "deferred"`, `retry_backend = "kafka"` |
//! | where the message waits | in the processor, holding its partition | a row of `retry_schedule` in PostgreSQL | a record in `<topic>.retry` |
//! | its partition meanwhile | paused behind it | moves on (the key's later messages wait behind it) | moves on (later messages of its key do not wait) |
//! | what attempts it again | the same processor, after a backoff | the retry worker every instance runs | the partition actor of the retry topic, when due |
//! | durable outcome of the wait | none: a crash rereads the record | the schedule row, committed with its audit entries | the broker's acknowledgement, then its audit entries |
//! | attempts run out | dead-lettered | dead-lettered (the DLQ push first) | dead-lettered under the original coordinates |
//!
//! All three use the same failure classes (`pipeline::failure`): a
//! transient failure is an attempt and is retried, a permanent one is
//! dead-lettered at once, and a dependency that does not answer is not an
//! attempt at all: it is waited out ([`crate::wait`], whose capped, jittered
//! [`Backoff`](crate::wait::backoff::Backoff) paces both the waits and the
//! retries). The retry headers of a retry-topic record are read while
//! decoding, so they live below this module, in `pipeline/retry_headers.rs`.

pub mod deferred;
pub mod in_place;
pub mod topic;
