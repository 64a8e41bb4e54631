//! Operators as people (issue 27, parts 3 and 4), against real PostgreSQL,
//! Redis and the mock cluster: who asks comes from the credential (a body
//! `requested_by` is refused), every operator entry records who, how and
//! where, and `audit verify` fails when those fields are edited; a bulk
//! replay over the four-eyes threshold waits for a second person, who
//! approves (the job runs attributed to both), rejects, or lets it expire;
//! no one approves their own request, not even with a new credential.

use std::time::Duration;

use custodian::app::Running;
use reqwest::Method;

use crate::support::process::Launch;
use crate::support::{wait_until, TestEnv};

fn add(env: &TestEnv, name: &str, role: &str) -> String {
    let out = Launch::command(env, &["operator", "add", name, "--role", role]).output();
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    out.stdout.trim().to_owned()
}

/// Parks `n` more undecodable messages.
fn park(env: &TestEnv, n: usize) {
    let payloads: Vec<String> = (0..n)
        .map(|_| format!("not an event {}", uuid::Uuid::new_v4()))
        .collect();
    let n = env.dlq_entries().len() + n;
    let records: Vec<(Option<&str>, &[u8], Option<i32>)> = payloads
        .iter()
        .map(|p| (Some("k"), p.as_bytes(), Some(0)))
        .collect();
    env.produce(&records);
    wait_until(Duration::from_secs(30), "parked", || {
        env.dlq_entries().len() >= n
    });
}

fn verify(env: &TestEnv) -> custodian::trail::verify::Report {
    let access = custodian::trail::Access::from_settings(&env.settings()).expect("settings");
    env.rt
        .block_on(access.verify(None, false, None))
        .expect("verify")
}

#[test]
fn four_eyes_a_bulk_replay_waits_for_a_second_person_who_approves_rejects_or_lets_it_expire() {
    let env = TestEnv::new(1);
    let mut settings = env.settings();
    settings.operators.four_eyes_threshold = 2;
    let app = Running::start(settings).expect("custodian starts");
    let ann = add(&env, "ann", "approver");
    let ben = add(&env, "ben", "approver");
    let viewer = add(&env, "vic", "viewer");
    park(&env, 3);
    let bulk = serde_json::json!({"topic": env.topic, "reason": "incident 12"});

    // Over the threshold: a pending request, nothing replayed.
    let (status, body) = env.request(
        &app,
        Method::POST,
        "/replay/jobs",
        Some(bulk.clone()),
        Some(&ann),
    );
    assert_eq!(status, 202, "{body}");
    let request = body["approval"]["id"].as_i64().expect("a request");
    assert_eq!(body["approval"]["state"], "pending");
    assert_eq!(body["approval"]["entries"], 3);
    assert_eq!(env.dlq_entries().len(), 3, "nothing ran yet");
    // Listed, to a viewer too.
    let (status, list) = env.request(&app, Method::GET, "/approvals", None, Some(&viewer));
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["requests"][0]["id"], request);

    // Not by the requester: nor with a new credential under the same name.
    let approve = |token: &str, id: i64| {
        env.request(
            &app,
            Method::POST,
            &format!("/approvals/{id}/approve"),
            Some(serde_json::json!({"reason": "checked the incident"})),
            Some(token),
        )
    };
    let (status, body) = approve(&ann, request);
    assert_eq!(status, 403, "{body}");
    assert!(body["message"]
        .as_str()
        .is_some_and(|m| m.contains("different person")));
    let out = Launch::command(&env, &["operator", "rotate", "ann"]).output();
    assert!(out.success, "{}", out.stderr);
    let ann_again = out.stdout.trim().to_owned();
    let (status, body) = approve(&ann_again, request);
    assert_eq!(
        status, 403,
        "a second credential is the same person: {body}"
    );
    // Nor from the command line, under the same name.
    let out = Launch::command(
        &env,
        &[
            "approvals",
            "approve",
            &request.to_string(),
            "--reason",
            "x",
        ],
    )
    .env("CUSTODIAN_TOKEN", &ann_again)
    .output();
    assert!(!out.success);
    assert!(out.stderr.contains("different person"), "{}", out.stderr);

    // Ben approves: the job runs, attributed to both.
    let (status, body) = approve(&ben, request);
    assert_eq!(status, 200, "{body}");
    assert!(body["outcome"]["replay_job"].is_string(), "{body}");
    wait_until(Duration::from_secs(30), "replayed", || {
        env.db().count(
            "SELECT count(*) AS n FROM audit_log WHERE status = 'MESSAGE_REPLAYED' \
              AND detail->>'requested_by' = 'ann' \
              AND detail->'approved_by'->>'name' = 'ben' \
              AND detail->'operator'->>'channel' = 'api'",
        ) == 3
    });
    let (status, body) = approve(&ben, request);
    assert_eq!(status, 409, "decided once: {body}");
    // The replayed copies fail again (they are still undecodable).
    wait_until(Duration::from_secs(30), "parked again", || {
        env.dlq_entries().len() == 3
    });

    // Rejected: nothing runs.
    park(&env, 3);
    let (status, body) = env.request(
        &app,
        Method::POST,
        "/replay",
        Some(bulk.clone()),
        Some(&ben),
    );
    assert_eq!(status, 202, "the synchronous bulk replay too: {body}");
    let rejected = body["approval"]["id"].as_i64().expect("a request");
    let (status, body) = env.request(
        &app,
        Method::POST,
        &format!("/approvals/{rejected}/reject"),
        Some(serde_json::json!({"reason": "wrong topic"})),
        Some(&ann_again),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["approval"]["state"], "rejected");
    assert_eq!(approve(&ann_again, rejected).0, 409);
    assert_eq!(
        env.dlq_entries().len(),
        6,
        "a rejected request runs nothing"
    );
    assert_eq!(
        env.db()
            .count("SELECT count(*) AS n FROM audit_log WHERE status = 'MESSAGE_REPLAYED'"),
        3
    );

    // Within the threshold: runs at once.
    let (status, body) = env.request(
        &app,
        Method::POST,
        "/replay",
        Some(serde_json::json!({"topic": env.topic, "reason": "two", "limit": 2})),
        Some(&ann_again),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replayed"], 2);

    // Each step is a chained entry, and the trail holds.
    let db = env.db();
    for (status, n) in [
        ("REQUEST_CREATED", 2),
        ("REQUEST_APPROVED", 1),
        ("REQUEST_REJECTED", 1),
    ] {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) AS n FROM audit_log WHERE status = '{status}' AND chain_id IS NOT NULL"
            )),
            n,
            "{status}"
        );
    }
    let report = verify(&env);
    assert!(report.holds, "{:?}", report.problems());
    app.stop().expect("graceful stop");

    // Expiry: a request not decided in operators.approval_ttl.
    let mut settings = env.settings();
    settings.operators.four_eyes_threshold = 0;
    settings.operators.approval_ttl = Duration::from_secs(1);
    let app = Running::start(settings).expect("custodian starts");
    let (status, body) = env.request(
        &app,
        Method::POST,
        "/replay/jobs",
        Some(serde_json::json!({"topic": env.topic, "reason": "late"})),
        Some(&ann_again),
    );
    assert_eq!(status, 202, "{body}");
    let late = body["approval"]["id"].as_i64().expect("a request");
    std::thread::sleep(Duration::from_millis(1500));
    let (status, body) = env.request(
        &app,
        Method::POST,
        &format!("/approvals/{late}/approve"),
        Some(serde_json::json!({"reason": "too late"})),
        Some(&ben),
    );
    assert_eq!(status, 409, "{body}");
    assert!(body["message"]
        .as_str()
        .is_some_and(|m| m.contains("expired")));
    assert_eq!(
        env.db().count(
            "SELECT count(*) AS n FROM audit_log WHERE status = 'REQUEST_EXPIRED' AND chain_id IS NOT NULL"
        ),
        1
    );
    app.stop().expect("graceful stop");
}

#[test]
fn who_asks_comes_from_the_credential_and_verify_catches_an_edited_identity() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let olga = add(&env, "olga", "operator");
    park(&env, 2);
    let ids: Vec<String> = env
        .dlq_entries()
        .iter()
        .map(|e| e.message_id.to_string())
        .collect();

    // A body that names who asks is refused, saying why.
    let (status, body) = env.request(
        &app,
        Method::DELETE,
        &format!("/dlq/{}", ids[0]),
        Some(serde_json::json!({"reason": "dup", "requested_by": "root"})),
        Some(&olga),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["message"]
        .as_str()
        .is_some_and(|m| m.contains("requested_by") && m.contains("token")));
    assert_eq!(env.dlq_entries().len(), 2, "nothing was discarded");

    // The entry names the credential, the channel, the address and the
    // request id the client sent (echoed in the answer).
    let answer = env.rt.block_on(async {
        reqwest::Client::new()
            .delete(format!("http://{}/dlq/{}", app.http_addr, ids[0]))
            .bearer_auth(&olga)
            .header("X-Request-Id", "ticket-4711")
            .header("X-Custodian-Channel", "console")
            .json(&serde_json::json!({"reason": "duplicate"}))
            .send()
            .await
            .expect("request")
    });
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(
        answer.headers().get("x-request-id").map(|v| v.as_bytes()),
        Some(b"ticket-4711".as_slice())
    );
    let olga_id = env
        .db()
        .count("SELECT id AS n FROM operators WHERE name = 'olga'");
    assert_eq!(
        env.db().count(&format!(
            "SELECT count(*) AS n FROM audit_log WHERE status = 'MESSAGE_DISCARDED' \
              AND detail->>'requested_by' = 'olga' \
              AND detail->'operator'->>'credential' = '{olga_id}' \
              AND detail->'operator'->>'role' = 'operator' \
              AND detail->'operator'->>'channel' = 'console' \
              AND detail->'operator'->>'client' = '127.0.0.1' \
              AND detail->'operator'->>'request_id' = 'ticket-4711'"
        )),
        1
    );
    // From the command line: channel cli, and user@host as the client.
    let out = Launch::command(&env, &["dlq", "discard", &ids[1], "--reason", "dup"])
        .env("CUSTODIAN_TOKEN", &olga)
        .output();
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        env.db().count(
            "SELECT count(*) AS n FROM audit_log WHERE status = 'MESSAGE_DISCARDED' \
              AND detail->>'requested_by' = 'olga' \
              AND detail->'operator'->>'channel' = 'cli' \
              AND detail->'operator'->>'client' LIKE '%@%'"
        ),
        1
    );
    // A command's role is checked as an endpoint's: a viewer replays nothing.
    let vic = add(&env, "vic", "viewer");
    let out = Launch::command(&env, &["dlq", "replay", "--all", "--reason", "x"])
        .env("CUSTODIAN_TOKEN", &vic)
        .output();
    assert!(!out.success);
    assert!(
        out.stderr.contains("takes the operator role"),
        "{}",
        out.stderr
    );
    let out = Launch::command(&env, &["dlq", "list"])
        .env("CUSTODIAN_TOKEN", "")
        .output();
    assert!(!out.success, "no token, no reading");
    assert!(out.stderr.contains("CUSTODIAN_TOKEN"), "{}", out.stderr);
    let file = crate::support::scratch_dir("token").join("vic.token");
    std::fs::write(&file, format!("{vic}\n")).expect("token file");
    let out = Launch::command(&env, &["dlq", "list"])
        .env("CUSTODIAN_TOKEN", "")
        .arg("--token-file")
        .arg(&file)
        .output();
    assert!(out.success, "--token-file: {}{}", out.stdout, out.stderr);

    // The identity is chained: editing it (triggers off, as a superuser
    // can) breaks the chain.
    assert!(verify(&env).holds);
    env.as_superuser(
        &env.superuser_url(),
        &[
            "SET session_replication_role = replica",
            "UPDATE audit_log SET detail = jsonb_set(detail, '{operator,name}', '\"mallory\"') \
             WHERE status = 'MESSAGE_DISCARDED' AND detail->'operator'->>'channel' = 'console'",
        ],
    );
    let report = verify(&env);
    assert!(!report.holds, "an edited identity must break the chain");
    assert!(
        report.chains.iter().any(|c| c.breach.is_some()),
        "{:?}",
        report.problems()
    );
    app.stop().expect("graceful stop");
}
