//! The HTTP API's contract: the token guards everything but health,
//! readiness and metrics; bad requests get a 4xx JSON error, never a 500.

use crate::support::{TestEnv, TEST_TOKEN};
use custodian::app::Running;
use reqwest::Method;

#[test]
fn the_token_guards_the_api_and_only_the_api() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let addr = app.http_addr;
    let id = uuid::Uuid::new_v4();
    let reason = serde_json::json!({"reason": "test"});
    let guarded: [(Method, String, Option<serde_json::Value>); 6] = [
        (Method::GET, format!("/messages/{id}"), None),
        (Method::GET, "/dlq".into(), None),
        (Method::GET, format!("/dlq/{id}"), None),
        (Method::DELETE, format!("/dlq/{id}"), Some(reason.clone())),
        (Method::POST, format!("/replay/{id}"), Some(reason.clone())),
        (
            Method::POST,
            "/replay".into(),
            Some(serde_json::json!({"reason": "test", "topic": env.topic})),
        ),
    ];
    for (method, path, body) in &guarded {
        let (status, json) = env.request(addr, method.clone(), path, body.clone(), None);
        assert_eq!(status, 401, "{method} {path} without a token: {json}");
        assert_eq!(json["error"], "unauthorized");
        let (status, json) = env.request(
            addr,
            method.clone(),
            path,
            body.clone(),
            Some("wrong-token-0123456789"),
        );
        assert_eq!(status, 403, "{method} {path} with a wrong token: {json}");
        assert_eq!(json["error"], "forbidden");
        let (status, json) =
            env.request(addr, method.clone(), path, body.clone(), Some(TEST_TOKEN));
        assert!(
            status == 200 || status == 404,
            "{method} {path} with the token: {status} {json}"
        );
    }
    // A scheme other than Bearer is not accepted either.
    let raw = env.rt.block_on(async {
        reqwest::Client::new()
            .get(format!("http://{addr}/dlq"))
            .header("Authorization", format!("Basic {TEST_TOKEN}"))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    });
    assert_eq!(raw, 401);
    // Health, readiness and metrics stay open.
    assert_eq!(env.get(addr, "/health").0, 200);
    assert_eq!(env.get(addr, "/metrics").0, 200);
    assert_ne!(env.get(addr, "/ready").0, 401);
    app.stop().expect("graceful stop");
}

#[test]
fn without_a_configured_token_the_api_is_closed() {
    let env = TestEnv::new(1);
    let mut settings = env.settings();
    settings.http.api_token = None;
    let app = Running::start(settings).expect("custodian starts");
    let (status, json) = env.api(&app, Method::GET, "/dlq", None);
    assert_eq!(status, 403, "{json}");
    assert!(json["message"]
        .as_str()
        .is_some_and(|m| m.contains("http.api_token")));
    app.stop().expect("graceful stop");
}

#[test]
fn malformed_requests_get_a_4xx_json_error() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let addr = app.http_addr;
    let id = uuid::Uuid::new_v4();
    let json = |v: serde_json::Value| Some(v);
    let cases: Vec<(Method, String, Option<serde_json::Value>, u16)> = vec![
        (Method::GET, "/messages/not-a-uuid".into(), None, 400),
        (Method::GET, "/dlq/12345".into(), None, 400),
        (
            Method::POST,
            "/replay/not-a-uuid".into(),
            json(serde_json::json!({"reason": "x"})),
            400,
        ),
        (Method::GET, "/dlq?limit=0".into(), None, 400),
        (Method::GET, "/dlq?limit=many".into(), None, 400),
        (Method::GET, "/dlq?limit=100000".into(), None, 400),
        (Method::GET, "/dlq?from=yesterday".into(), None, 400),
        (Method::GET, "/dlq?colour=blue".into(), None, 400),
        (Method::POST, format!("/replay/{id}"), None, 400),
        (
            Method::POST,
            format!("/replay/{id}"),
            json(serde_json::json!({})),
            400,
        ),
        (
            Method::POST,
            format!("/replay/{id}"),
            json(serde_json::json!({"reason": ""})),
            400,
        ),
        (
            Method::POST,
            format!("/replay/{id}"),
            json(serde_json::json!({"reason": 7})),
            400,
        ),
        (
            Method::POST,
            format!("/replay/{id}"),
            json(serde_json::json!({"reason": "x", "surprise": true})),
            400,
        ),
        (
            Method::POST,
            format!("/replay/{id}"),
            json(serde_json::json!({"reason": "x".repeat(2000)})),
            400,
        ),
        (
            Method::POST,
            "/replay".into(),
            json(serde_json::json!({"topic": "t"})),
            400,
        ),
        (
            Method::POST,
            "/replay".into(),
            json(serde_json::json!({"reason": "x", "limit": 0})),
            400,
        ),
        (
            Method::POST,
            "/replay".into(),
            json(serde_json::json!({"reason": "x", "limit": 1_000_000})),
            400,
        ),
        (
            Method::DELETE,
            format!("/dlq/{id}"),
            json(serde_json::json!({"by": "x"})),
            400,
        ),
        (
            Method::POST,
            format!("/replay/{id}"),
            json(serde_json::json!({"reason": "x"})),
            404,
        ),
        (Method::GET, format!("/dlq/{id}"), None, 404),
        (Method::GET, format!("/messages/{id}"), None, 404),
        (Method::GET, "/no/such/thing".into(), None, 404),
    ];
    for (method, path, body, expected) in cases {
        let (status, json) = env.api(addr, method.clone(), &path, body.clone());
        assert_eq!(status, expected, "{method} {path} {body:?}: {json}");
        assert!(json["error"].is_string(), "{method} {path}: {json}");
        assert!(json["message"].is_string(), "{method} {path}: {json}");
    }
    // A body that is not JSON at all.
    let status = env.rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{addr}/replay/{id}"))
            .bearer_auth(TEST_TOKEN)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    });
    assert_eq!(status, 400);
    app.stop().expect("graceful stop");
}
