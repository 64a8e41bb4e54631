//! Records in, durable outcomes out.

mod domain;
mod flow;
mod money;
mod outcome;
mod produce;
mod properties;
