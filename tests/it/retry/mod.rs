//! Transient failures: retried in place, in the deferred schedule, or
//! through a retry topic.

mod deferred;
mod in_place;
mod retry_topic;
mod shared;
