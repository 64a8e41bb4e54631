//! Four-eyes in the console, in headless Chromium: an operator's bulk
//! replay over the threshold waits as a request; a viewer sees it listed
//! with no way to decide it; an approver approves it from the Approvals
//! view, and the replay runs attributed to both.

use super::browser::{browser, chromedriver, click, eventually, fill, text, PATIENCE};
use crate::support::process::Launch;
use crate::support::{wait_until, TestEnv};
use fantoccini::Locator;
use reqwest::Method;

#[test]
fn an_approver_approves_a_pending_bulk_replay_in_the_console() {
    let env = TestEnv::new(1);
    // A threshold of 2 for this instance.
    let mut app = Launch::run(&env)
        .setting("operators.four_eyes_threshold", 2)
        .spawn();
    app.wait_ready(&env, PATIENCE);
    let token = |name: &str, role: &str| {
        let out = Launch::command(&env, &["operator", "add", name, "--role", role]).output();
        assert!(out.success, "{}{}", out.stdout, out.stderr);
        out.stdout.trim().to_owned()
    };
    let olga = token("olga", "operator");
    let vic = token("vic", "viewer");
    let ann = token("ann", "approver");
    let payloads: Vec<String> = (0..3)
        .map(|i| format!("not an event {i} {}", uuid::Uuid::new_v4()))
        .collect();
    let records: Vec<(Option<&str>, &[u8], Option<i32>)> = payloads
        .iter()
        .map(|p| (Some("k"), p.as_bytes(), Some(0)))
        .collect();
    env.produce(&records);
    wait_until(PATIENCE, "three parked", || env.dlq_entries().len() == 3);
    let (status, body) = env.request(
        &app,
        Method::POST,
        "/replay/jobs",
        Some(serde_json::json!({"topic": env.topic, "reason": "incident 12"})),
        Some(&olga),
    );
    assert_eq!(status, 202, "{body}");
    let request = body["approval"]["id"].as_i64().expect("a request");

    let (_driver, port) = chromedriver();
    let ui = format!("http://{}/ui", app.http());
    env.rt.block_on(async {
        let c = browser(port).await;
        c.goto(&ui).await.expect("open the console");
        click(&c, "#tab-approvals").await;
        let row = "#approvals tr td:first-child";
        // A viewer sees the request, and no Approve.
        fill(&c, "#token", &vic).await;
        click(&c, "#connect").await;
        eventually("listed to a viewer", || async {
            text(&c, row).await == request.to_string()
        })
        .await;
        assert!(c
            .find_all(Locator::Css("#approvals button.approve"))
            .await
            .expect("find")
            .is_empty());
        // An approver decides it, with a reason.
        fill(&c, "#token", &ann).await;
        click(&c, "#connect").await;
        eventually("signed in as an approver", || async {
            text(&c, "#me").await == "signed in as ann (approver)"
        })
        .await;
        click(&c, "#tab-approvals").await;
        eventually("Approve offered", || async {
            !c.find_all(Locator::Css("#approvals button.approve"))
                .await
                .expect("find")
                .is_empty()
        })
        .await;
        click(&c, "#approvals button.approve").await;
        eventually("a reason demanded", || async {
            text(&c, "#status").await.contains("reason is required")
        })
        .await;
        fill(&c, "#a-reason", "checked incident 12").await;
        click(&c, "#approvals button.approve").await;
        eventually("approved", || async {
            text(&c, "#status").await.contains("approved")
        })
        .await;
        c.close().await.expect("close the browser");
    });
    wait_until(PATIENCE, "replayed, attributed to both", || {
        env.db().count(
            "SELECT count(*) AS n FROM audit_log WHERE status = 'MESSAGE_REPLAYED' \
              AND detail->>'requested_by' = 'olga' \
              AND detail->'approved_by'->>'name' = 'ann' \
              AND detail->'approved_by'->>'channel' = 'console'",
        ) == 3
    });
    assert_eq!(
        env.db().count(
            "SELECT count(*) AS n FROM audit_log WHERE status = 'REQUEST_APPROVED' \
              AND detail->'operator'->>'channel' = 'console'"
        ),
        1
    );
    app.stop();
}
