//! The API contract: the OpenAPI document is collected from the registered
//! handlers, and every operation it lists is really routed (the default
//! "no such endpoint" 404 never answers one of them) and guarded by the
//! role it documents: 401 without a token, 403 for each role below it,
//! through for each role at or above it.

use crate::support::TestEnv;
use custodian::app::Running;
use reqwest::Method;

#[test]
fn every_documented_operation_is_routed_and_guarded_as_documented() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let (status, doc) = env.request(&app, Method::GET, "/openapi.json", None, None);
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            operations.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    let mut listed: Vec<String> = operations
        .iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "DELETE /dlq/{message_id}",
            "DELETE /operators/{name}",
            "GET /approvals",
            "GET /audit/reconcile",
            "GET /audit/status",
            "GET /audit/verify",
            "GET /deliveries",
            "GET /dlq",
            "GET /dlq/count",
            "GET /dlq/kinds",
            "GET /dlq/{message_id}",
            "GET /flow",
            "GET /health",
            "GET /messages",
            "GET /messages/{message_id}",
            "GET /messages/{message_id}/record",
            "GET /metrics",
            "GET /operators",
            "GET /orders/{id}",
            "GET /ready",
            "GET /replay/jobs/{job_id}",
            "GET /status",
            "GET /status/samples",
            "GET /transactions",
            "GET /transactions/search",
            "GET /transactions/{id}",
            "GET /users/{id}",
            "GET /whoami",
            "POST /approvals/{approval_id}/approve",
            "POST /approvals/{approval_id}/reject",
            "POST /audit/erasures",
            "POST /flow/pause",
            "POST /flow/resume",
            "POST /messages/{message_id}/unmask",
            "POST /operators",
            "POST /operators/{name}/rotate",
            "POST /produce",
            "POST /replay",
            "POST /replay/jobs",
            "POST /replay/jobs/{job_id}/resume",
            "POST /replay/{message_id}",
        ]
    );
    let open = ["/health", "/ready", "/metrics"];
    let roles = ["viewer", "operator", "approver", "admin"];
    let tokens: Vec<String> = roles
        .iter()
        .map(|role| {
            let out = crate::support::process::Launch::command(
                &env,
                &["operator", "add", &format!("matrix-{role}"), "--role", role],
            )
            .output();
            assert!(out.success, "{}{}", out.stdout, out.stderr);
            out.stdout.trim().to_owned()
        })
        .collect();
    for (method, path, op) in &operations {
        let concrete = path
            .replace("{message_id}", &uuid::Uuid::new_v4().to_string())
            .replace("{job_id}", &uuid::Uuid::new_v4().to_string())
            .replace("{approval_id}", "987654321")
            .replace("{name}", "nobody")
            .replace("{id}", "absent");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let body = matches!(method, Method::POST | Method::DELETE).then(|| serde_json::json!({}));
        let (status, answer) = if *path == "/metrics" {
            let (status, _) = env.get(&app, path);
            (status, serde_json::Value::Null)
        } else {
            env.api(&app, method.clone(), &concrete, body)
        };
        assert_ne!(
            answer["message"], "no such endpoint",
            "{method} {path} is not routed"
        );
        assert_ne!(status, 405, "{method} {path}");
        let guarded = op["security"].is_array();
        assert_eq!(
            guarded,
            !open.contains(&path.as_str()),
            "{method} {path} security"
        );
        if guarded {
            let (status, _) = env.request(&app, method.clone(), &concrete, None, None);
            assert_eq!(status, 401, "{path} without a token");
            // The one role it documents, and each token against it.
            let declared = op["security"][0]["bearer"]
                .as_array()
                .filter(|r| r.len() == 1)
                .and_then(|r| r[0].as_str())
                .unwrap_or_else(|| panic!("{method} {path} declares no single role"));
            let least = roles
                .iter()
                .position(|r| *r == declared)
                .unwrap_or_else(|| panic!("{method} {path}: unknown role {declared}"));
            for (rank, token) in tokens.iter().enumerate() {
                let body =
                    matches!(method, Method::POST | Method::DELETE).then(|| serde_json::json!({}));
                let (status, answer) =
                    env.request(&app, method.clone(), &concrete, body, Some(token));
                if rank < least {
                    assert_eq!(
                        status, 403,
                        "{method} {path} ({declared}) as a {}: {answer}",
                        roles[rank]
                    );
                    assert!(answer["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(declared)));
                } else {
                    assert!(
                        status != 401 && status != 403,
                        "{method} {path} ({declared}) as a {}: {status} {answer}",
                        roles[rank]
                    );
                }
            }
        }
    }
    let (status, page) = env.get(&app, "/docs");
    assert_eq!(status, 200);
    assert!(page.contains("SwaggerUIBundle") && page.contains("/openapi.json"));
    let (status, bundle) = env.get(&app, "/docs/swagger-ui-bundle.js");
    assert_eq!(status, 200);
    assert!(bundle.len() > 100_000, "the vendored UI is served");
    app.stop().expect("graceful stop");
}

/// The properties a schema documents, through `$ref` and `allOf`.
fn properties(doc: &serde_json::Value, schema: &serde_json::Value) -> Vec<String> {
    if let Some(name) = schema["$ref"].as_str() {
        let name = name.trim_start_matches("#/components/schemas/");
        return properties(doc, &doc["components"]["schemas"][name]);
    }
    let mut found: Vec<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        found.extend(properties(doc, part));
    }
    found
}

/// A transaction as `GET /transactions/{id}` documents it: the state its
/// events carried and the projection's own columns (two types, one
/// flattened into the other, each under its own schema name).
#[test]
fn a_transaction_is_documented_with_all_its_fields() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let (status, doc) = env.request(&app, Method::GET, "/openapi.json", None, None);
    assert_eq!(status, 200);
    let answer = &doc["paths"]["/transactions/{id}"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"];
    let documented = properties(&doc, answer);
    for field in [
        "id",
        "user_id",
        "amount",
        "metadata",
        "enrichment",
        "version",
        "updated_at",
        "deleted_at",
    ] {
        assert!(
            documented.iter().any(|p| p == field),
            "{field} missing from {documented:?}"
        );
    }
    app.stop().expect("graceful stop");
}
