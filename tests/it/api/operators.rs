//! Operators with tokens of their own (issue 27, part 1), against real
//! PostgreSQL: `custodian operator add|rotate|revoke|list`, the API taking
//! an operator's token (with or without the shared one configured), a
//! rotation or revocation refusing the old token at once, each change a
//! chained operator entry, and no token ever listed.

use custodian::app::Running;
use reqwest::Method;

use crate::support::process::Launch;
use crate::support::TestEnv;

fn cli(env: &TestEnv, args: &[&str]) -> crate::support::process::Finished {
    Launch::command(env, args).output()
}

fn whoami(env: &TestEnv, app: &Running, token: &str) -> (u16, serde_json::Value) {
    env.request(app, Method::GET, "/whoami", None, Some(token))
}

#[test]
fn an_operators_token_works_until_it_is_rotated_or_revoked_and_each_change_is_chained() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let out = cli(&env, &["operator", "add", "erin", "--role", "operator"]);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let first = out.stdout.trim().to_owned();
    assert!(first.starts_with("cust_"), "{first}");

    let (status, me) = whoami(&env, &app, &first);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["name"], "erin");
    assert_eq!(me["role"], "operator");
    assert_eq!(me["shared"], false);
    let (status, me) = env.api(&app, Method::GET, "/whoami", None);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["shared"], true);
    assert_eq!(me["role"], "admin");
    // An operator's token opens the API as the shared one does.
    let (status, _) = env.request(&app, Method::GET, "/dlq", None, Some(&first));
    assert_eq!(status, 200);

    let again = cli(&env, &["operator", "add", "erin", "--role", "admin"]);
    assert!(!again.success);
    assert!(again.stderr.contains("exists already"), "{}", again.stderr);
    let bad = cli(&env, &["operator", "add", "erin smith", "--role", "viewer"]);
    assert!(!bad.success);

    // Rotated: the old token is refused at once, the new one works.
    let out = cli(&env, &["operator", "rotate", "erin"]);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let second = out.stdout.trim().to_owned();
    assert_ne!(first, second);
    assert_eq!(whoami(&env, &app, &first).0, 403);
    assert_eq!(whoami(&env, &app, &second).0, 200);
    // Revoked: refused at once.
    let out = cli(&env, &["operator", "revoke", "erin"]);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    assert_eq!(whoami(&env, &app, &second).0, 403);
    let again = cli(&env, &["operator", "revoke", "erin"]);
    assert!(!again.success, "a revoked operator is not revoked twice");

    // Listed, never with a token or its digest.
    let out = cli(&env, &["operator", "list", "--json"]);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let listed: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(listed[0]["name"], "erin");
    assert!(!listed[0]["revoked_at"].is_null());
    assert!(!out.stdout.contains(&first) && !out.stdout.contains(&second));
    assert!(!out.stdout.contains("cust_"), "{}", out.stdout);

    // Each change is a chained operator entry, and the trail holds.
    let db = env.db();
    for status in ["OPERATOR_ADDED", "OPERATOR_ROTATED", "OPERATOR_REVOKED"] {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) AS n FROM audit_log WHERE status = '{status}' \
                  AND chain_id IS NOT NULL AND detail->'subject'->>'name' = 'erin' \
                  AND detail->>'requested_by' = 'shared-token' \
                  AND detail->'operator'->>'channel' = 'cli'"
            )),
            1,
            "{status}"
        );
    }
    let access = custodian::trail::Access::from_settings(&env.settings()).expect("settings");
    let report = env
        .rt
        .block_on(access.verify(None, false, None))
        .expect("verify");
    assert!(report.holds, "{:?}", report.problems());
    // A row is never deleted.
    assert!(env
        .as_superuser_result(&env.superuser_url(), "DELETE FROM operators")
        .is_err());
    app.stop().expect("graceful stop");
}

#[test]
fn without_a_shared_token_an_operators_token_still_opens_the_api() {
    let env = TestEnv::new(1);
    let mut settings = env.settings();
    settings.http.api_token = None;
    let app = Running::start(settings).expect("custodian starts");
    let out = cli(&env, &["operator", "add", "fay", "--role", "viewer"]);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let token = out.stdout.trim().to_owned();
    let (status, me) = whoami(&env, &app, &token);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["role"], "viewer");
    // A viewer reads, and changes nothing.
    let (status, _) = env.request(&app, Method::GET, "/dlq", None, Some(&token));
    assert_eq!(status, 200);
    let (status, body) = env.request(
        &app,
        Method::DELETE,
        &format!("/dlq/{}", uuid::Uuid::new_v4()),
        Some(serde_json::json!({"reason": "x"})),
        Some(&token),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body["message"]
        .as_str()
        .is_some_and(|m| m.contains("viewer")));
    // An operator asks for an erasure; approving takes an approver.
    let out = cli(&env, &["operator", "add", "gil", "--role", "operator"]);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let gil = out.stdout.trim().to_owned();
    let (status, body) = env.request(
        &app,
        Method::POST,
        "/audit/erasures",
        Some(serde_json::json!({"key": "k", "reason": "x"})),
        Some(&token),
    );
    assert_eq!(status, 403, "a viewer asks for nothing: {body}");
    let (status, body) = env.request(
        &app,
        Method::POST,
        "/audit/erasures",
        Some(serde_json::json!({"key": "k", "reason": "x"})),
        Some(&gil),
    );
    assert_eq!(status, 202, "{body}");
    let (status, body) = env.request(
        &app,
        Method::POST,
        &format!("/approvals/{}/approve", body["approval"]["id"]),
        Some(serde_json::json!({"reason": "x"})),
        Some(&gil),
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = whoami(&env, &app, "cust_not-a-token");
    assert_eq!(status, 403, "{body}");
    assert!(body["message"]
        .as_str()
        .is_some_and(|m| m.contains("http.api_token")));
    app.stop().expect("graceful stop");
}
