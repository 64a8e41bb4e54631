//! A pause holds on every instance of the group, across a rebalance and a
//! restart, with nothing past its position applied or committed; a resume
//! continues with nothing lost. A partition's pause holds it alone.

use std::time::Duration;

use custodian::app::Running;
use reqwest::Method;
use serde_json::json;

use super::{all_held, states};
use crate::support::process::Launch;
use crate::support::{wait_until, TestEnv};

const PATIENCE: Duration = Duration::from_secs(90);

fn instance(env: &TestEnv) -> Running {
    Running::start(env.settings_with(&[("flow.poll_interval", json!("200ms"))]))
        .expect("custodian starts")
}

fn processed(env: &TestEnv) -> i64 {
    env.db().audited("MESSAGE_PROCESSED")
}

#[test]
fn a_pause_holds_on_two_instances_across_a_rebalance_and_a_restart_and_a_resume_loses_nothing() {
    let env = TestEnv::new(4);
    let first = instance(&env);
    env.produce_synthetic(200, 71, 0.0);
    wait_until(PATIENCE, "the first 200 applied", || processed(&env) == 200);
    let second = instance(&env);
    wait_until(PATIENCE, "both own partitions", || {
        env.assigned_partitions(&second).is_some_and(|n| n > 0)
            && env.assigned_partitions(&first).is_some_and(|n| n > 0)
    });

    // Paused through the first instance; the second holds it too.
    let (status, paused) = env.api(
        &first,
        Method::POST,
        "/flow/pause",
        Some(json!({"topic": env.topic, "reason": "ledger migration, ticket 41"})),
    );
    assert_eq!(status, 201, "{paused}");
    assert_eq!(paused["paused_by"]["name"], "shared-token", "{paused}");
    let (status, again) = env.api(
        &first,
        Method::POST,
        "/flow/pause",
        Some(json!({"topic": env.topic, "reason": "twice"})),
    );
    assert_eq!(status, 409, "{again}");
    wait_until(PATIENCE, "every partition held on both instances", || {
        let (a, b) = (states(&env, &first), states(&env, &second));
        a.len() + b.len() == 4 && a.iter().chain(&b).all(|(_, s)| s == "held")
    });
    let committed = env.committed_or_zero();
    env.produce_synthetic(300, 72, 0.0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(processed(&env), 200, "nothing applied while paused");

    // A rebalance: the second leaves, the first takes every partition, held.
    second.stop().expect("graceful stop");
    wait_until(PATIENCE, "the first holds all four", || {
        all_held(&env, &first, 4)
    });
    // A restart: a fresh instance starts held (before it reads a record).
    first.stop().expect("graceful stop");
    let third = instance(&env);
    wait_until(PATIENCE, "the restarted instance holds all four", || {
        all_held(&env, &third, 4)
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        processed(&env),
        200,
        "nothing applied across rebalance and restart"
    );
    assert_eq!(
        env.committed_or_zero(),
        committed,
        "nothing committed past the pause"
    );

    // Resumed from the command line: everything, once.
    let out = Launch::command(
        &env,
        &[
            "flow",
            "resume",
            "--topic",
            &env.topic,
            "--reason",
            "migration done",
        ],
    )
    .output();
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    wait_until(PATIENCE, "all 500 applied", || processed(&env) == 500);
    env.assert_applied_once(500);
    assert!(env.dlq_entries().is_empty());
    let (_, flow) = env.api(&third, Method::GET, "/flow", None);
    assert_eq!(flow["pauses"], json!([]), "{flow}");
    // Both steps are chained operator entries saying who and why.
    assert_eq!(
        env.db().count(
            "SELECT count(*) AS n FROM audit_log WHERE status = 'FLOW_PAUSED' AND chain_id IS NOT NULL \
              AND detail->>'reason' = 'ledger migration, ticket 41' \
              AND detail->'operator'->>'channel' = 'api'"
        ),
        1
    );
    assert_eq!(
        env.db().count(
            "SELECT count(*) AS n FROM audit_log WHERE status = 'FLOW_RESUMED' AND chain_id IS NOT NULL \
              AND detail->>'reason' = 'migration done' AND detail->'operator'->>'channel' = 'cli'"
        ),
        1
    );
    env.assert_chains_hold(&third);
    third.stop().expect("graceful stop");
}

#[test]
fn a_partitions_pause_holds_it_alone_and_bad_targets_are_refused() {
    let env = TestEnv::new(2);
    let app = instance(&env);
    for (body, field) in [
        (json!({"topic": "no-such-topic", "reason": "x"}), "topic"),
        (json!({"partition": 0, "reason": "x"}), "partition"),
        (
            json!({"route": "http://nowhere.example", "reason": "x"}),
            "route",
        ),
        (json!({"topic": env.topic, "reason": " "}), "reason"),
        (
            json!({"topic": env.topic, "reason": "x", "requested_by": "eve"}),
            "requested_by",
        ),
    ] {
        let (status, answer) = env.api(&app, Method::POST, "/flow/pause", Some(body));
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["message"].as_str().unwrap_or("").starts_with(field),
            "{answer}"
        );
    }
    let (status, answer) = env.api(
        &app,
        Method::POST,
        "/flow/resume",
        Some(json!({"topic": env.topic, "reason": "not paused"})),
    );
    assert_eq!(status, 404, "{answer}");

    let out = Launch::command(
        &env,
        &[
            "flow",
            "pause",
            "--topic",
            &env.topic,
            "--partition",
            "0",
            "--reason",
            "p0 only",
        ],
    )
    .output();
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    wait_until(PATIENCE, "partition 0 held, 1 not", || {
        let s = states(&env, &app);
        s.contains(&(0, "held".into())) && !s.contains(&(1, "held".into()))
    });
    let event = |id: &str| {
        crate::support::transaction_event("transaction.created", id, 1.0, "2024-01-01T12:00:00Z")
    };
    let (held, free) = (event("tx-p0"), event("tx-p1"));
    env.produce(&[
        (Some("k0"), held.as_bytes(), Some(0)),
        (Some("k1"), free.as_bytes(), Some(1)),
    ]);
    wait_until(PATIENCE, "partition 1's applied", || processed(&env) == 1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(processed(&env), 1, "partition 0's waits");
    let (status, resumed) = env.api(
        &app,
        Method::POST,
        "/flow/resume",
        Some(json!({"topic": env.topic, "partition": 0, "reason": "go on"})),
    );
    assert_eq!(status, 200, "{resumed}");
    wait_until(PATIENCE, "partition 0's applied", || processed(&env) == 2);
    app.stop().expect("graceful stop");
}
