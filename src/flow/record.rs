//! Records each change of an http route's circuit breaker in the audit
//! trail: a chained operator entry (BREAKER_OPENED, BREAKER_HALF_OPEN,
//! BREAKER_CLOSED) naming the route, the states, why, and this instance.
//! The gates send changes here; one that cannot be written now (PostgreSQL
//! down) is tried again, in order, until it is or custodian stops.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::breaker::State;
use super::gate::{Changed, Changes};
use crate::store::PgPool;
use crate::trail::operator;

pub const OPENED: &str = "BREAKER_OPENED";
pub const HALF_OPEN: &str = "BREAKER_HALF_OPEN";
pub const CLOSED: &str = "BREAKER_CLOSED";

fn status(to: State) -> &'static str {
    match to {
        State::Open => OPENED,
        State::HalfOpen => HALF_OPEN,
        State::Closed => CLOSED,
    }
}

async fn write(pool: &PgPool, changed: &Changed, instance: &str) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let detail = serde_json::json!({
        "route": changed.route,
        "from": changed.change.from.as_str(),
        "to": changed.change.to.as_str(),
        "why": changed.change.why,
        "instance": instance,
        "at": changed.at,
    });
    operator::record(
        &mut conn,
        operator::Action::about(
            &format!("breaker/{}", changed.route),
            status(changed.change.to),
            -1,
            None,
            detail,
        ),
    )
    .await
    .map_err(|e| e.to_string())
}

/// A channel for the gates, and the task that records what they send.
pub fn spawn(pool: PgPool, stop: CancellationToken) -> (Changes, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Changed>();
    let task = actix_rt::spawn(async move {
        let instance = crate::status::registry::instance_name();
        loop {
            let changed = tokio::select! {
                next = rx.recv() => match next {
                    Some(changed) => changed,
                    None => return,
                },
                () = stop.cancelled() => return,
            };
            let mut delay = Duration::from_millis(100);
            loop {
                match write(&pool, &changed, &instance).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(route = %changed.route, %error, "cannot record a circuit breaker change yet; trying again");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    });
    (tx, task)
}
