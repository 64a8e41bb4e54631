//! The audit trail: hash chains, checkpoints, verify and reconcile, and
//! the message explorer that reads it.

mod archive;
mod chain;
mod erasure;
mod explorer;
mod holds;
mod trail_defects;
