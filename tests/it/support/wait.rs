//! Polling until something holds: custodian works asynchronously, so a
//! test waits for what it expects, within a bound, and fails naming it.

use std::time::{Duration, Instant};

/// Polls `check` until it returns true or `timeout` passes; panics with `what`.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        if started.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
