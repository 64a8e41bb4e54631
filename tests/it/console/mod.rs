//! The operator's console, clicked through in headless Chromium.

mod approvals;
mod browser;
mod flow;
mod masking;
mod operator;
mod schemas;
mod traces;
mod views;

use std::time::Duration;

use crate::support::process::{Launch, Process};
use crate::support::{transaction_event, TestEnv};

/// The custodian a console test clicks through: a process of its own, so
/// the counters and charts the console reads from `/metrics` (process-wide)
/// show this test's traffic alone.
fn console_custodian(env: &TestEnv) -> Process {
    let mut custodian = Launch::run(env).spawn();
    custodian.wait_ready(env, Duration::from_secs(60));
    custodian
}

/// An event of a type no route takes: a dead letter.
fn unknown_event(env: &TestEnv) -> String {
    transaction_event(
        "transaction.exploded",
        &format!("{}-x", env.topic),
        1.0,
        "2024-01-01T12:00:00Z",
    )
}
