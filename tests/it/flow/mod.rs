//! Flow control (issue 29): operators' pauses honoured by every instance,
//! across a rebalance and a restart; circuit breakers per http route;
//! stalled partitions flagged.

mod breaker;
mod pause;
mod stall;

use reqwest::Method;

use crate::support::HttpTarget;
use crate::support::TestEnv;

/// The states of the partitions the instance at `addr` owns, from `/status`.
pub fn states(env: &TestEnv, addr: impl HttpTarget) -> Vec<(i32, String)> {
    let (status, body) = env.api(addr, Method::GET, "/status", None);
    if status != 200 {
        return Vec::new();
    }
    body["partitions"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r["partition"].as_i64().unwrap_or(-1) as i32,
                        r["state"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every partition the instance owns is held (and it owns `n`).
pub fn all_held(env: &TestEnv, addr: impl HttpTarget, n: usize) -> bool {
    let states = states(env, addr);
    states.len() == n && states.iter().all(|(_, s)| s == "held")
}
