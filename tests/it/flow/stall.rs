//! Head-of-line blocking: a partition whose oldest in-flight message has
//! waited longer than `flow.stall_after` (a downstream that holds the
//! request) is flagged in `/status` and a metric, naming the message by its
//! offset; the
//! flag clears when the message settles.

use std::sync::atomic::Ordering;
use std::time::Duration;

use custodian::app::Running;
use reqwest::Method;
use serde_json::json;

use crate::support::downstream::{Behaviour, KeyedDownstream};
use crate::support::{wait_until, TestEnv};

#[test]
fn a_stalled_partition_is_flagged_naming_its_oldest_message_and_cleared_after() {
    let env = TestEnv::new(1);
    let down = KeyedDownstream::start(Behaviour {
        hang: true.into(),
        ..Behaviour::default()
    });
    let app = Running::start(env.settings_with(&[
        (
            "routes",
            json!([{ "event_types": ["Notify"], "handler": "http", "url": down.url(),
                     "timeout": "60s" }]),
        ),
        ("flow.stall_after", json!("1s")),
    ]))
    .expect("custodian starts");
    let payload = json!({"eventId": uuid::Uuid::new_v4(), "type": "Notify",
                         "timestamp": "2025-01-11T12:00:00Z", "data": {"n": 1}})
    .to_string();
    env.produce(&[(Some("k"), payload.as_bytes(), Some(0))]);
    let stalled = || {
        let (_, status) = env.api(&app, Method::GET, "/status", None);
        status["partitions"][0]["stalled"].clone()
    };
    wait_until(Duration::from_secs(30), "the partition flagged", || {
        stalled().is_object()
    });
    let flag = stalled();
    assert_eq!(flag["offset"], 0, "{flag}");
    assert!(flag["since"].is_string(), "{flag}");
    assert_eq!(env.metric(&app, "partition_stalled"), 1.0);
    assert!(down.behaviour.hung.load(Ordering::SeqCst) >= 1);

    down.behaviour.hang.store(false, Ordering::SeqCst);
    wait_until(Duration::from_secs(30), "delivered and cleared", || {
        env.db().audited("MESSAGE_PROCESSED") == 1 && stalled().is_null()
    });
    assert_eq!(env.metric(&app, "partition_stalled"), 0.0);
    app.stop().expect("graceful stop");
}
