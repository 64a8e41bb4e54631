//! The dead-letter queue: listing, replay, discard, bulk replay jobs.

mod manage;
mod replay_jobs;
