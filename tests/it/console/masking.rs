//! Masking in the console (issue 27, part 5), in headless Chromium: a
//! viewer opens a message and sees its email masked, with no Unmask; an
//! admin (the shared token) unmasks it with a reason, sees it in clear, and
//! the lifecycle shows the MESSAGE_UNMASKED entry.

use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::json;

use super::browser::{browser, chromedriver, click, eventually, fill, screenshot, text, PATIENCE};
use crate::api::masking::user_created;
use crate::support::process::Launch;
use crate::support::{wait_until, TestEnv, TEST_TOKEN};

const EMAIL: &str = "ann@example.com";

async fn shown(c: &Client, css: &str) -> bool {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

/// Signs in with `token` and opens u-ann's message from the explorer.
async fn open_anns_message(c: &Client, token: &str) {
    fill(c, "#token", token).await;
    click(c, "#connect").await;
    click(c, "#tab-explorer").await;
    fill(c, "#x-key", "u-ann").await;
    click(c, "#x-search").await;
    eventually("u-ann's entry", || async {
        text(c, "#x-results tr:first-child td:nth-child(4)").await == "u-ann"
    })
    .await;
    click(c, "#x-results tr:first-child button.open").await;
    eventually("the message, masked", || async {
        text(c, "#m-masked").await.contains("/data/email")
            && text(c, "#m-payload").await.contains("••••:")
    })
    .await;
}

#[test]
fn masking_in_the_console_a_viewer_sees_masks_an_admin_unmasks_with_a_reason() {
    let env = TestEnv::new(1);
    let mut app = Launch::run(&env)
        .setting(
            "masking.fields",
            r#"[{handler="domain", pointers=["/data/email"]}]"#,
        )
        .setting(
            "masking.fingerprint_key",
            "console-fingerprint-key-0123456789abcdef",
        )
        .spawn();
    app.wait_ready(&env, Duration::from_secs(60));
    let ann = user_created("u-ann", json!(EMAIL));
    env.produce(&[(Some("u-ann"), ann.as_bytes(), None)]);
    wait_until(PATIENCE, "processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&1)
    });
    let out = Launch::command(&env, &["operator", "add", "vic", "--role", "viewer"]).output();
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let viewer = out.stdout.trim().to_owned();

    let (_driver, port) = chromedriver();
    let ui = format!("http://{}/ui", app.http());
    env.rt.block_on(async {
        let c = browser(port).await;
        c.set_window_size(1280, 1000).await.expect("window size");
        c.goto(&ui).await.expect("open the console");

        // A viewer: masked payload and projection row, no Unmask.
        open_anns_message(&c, &viewer).await;
        assert!(!text(&c, "#m-payload").await.contains(EMAIL));
        assert!(!text(&c, "#m-projection").await.contains(EMAIL));
        assert!(!shown(&c, "#m-unmask-box").await, "a viewer cannot unmask");

        // An admin: Unmask, refused by the page without a reason.
        click(&c, "#m-close").await;
        open_anns_message(&c, TEST_TOKEN).await;
        eventually("Unmask offered", || async {
            shown(&c, "#m-unmask-box").await
        })
        .await;
        click(&c, "#m-unmask").await;
        eventually("a reason demanded", || async {
            text(&c, "#status").await.contains("reason is required")
        })
        .await;
        fill(&c, "#m-unmask-reason", "ticket 9: confirm the address").await;
        click(&c, "#m-unmask").await;
        eventually("in clear, and on the record", || async {
            text(&c, "#m-payload").await.contains(EMAIL)
                && text(&c, "#m-projection").await.contains(EMAIL)
                && text(&c, "#m-lifecycle").await.contains("MESSAGE_UNMASKED")
                && text(&c, "#m-masked").await.contains("unmasked for you")
        })
        .await;
        assert!(text(&c, "#m-lifecycle")
            .await
            .contains("ticket 9: confirm the address"));
        screenshot(&c, "unmasked").await;
        c.close().await.expect("close the browser");
    });
    assert_eq!(
        env.db().count(
            "SELECT count(*) AS n FROM audit_log WHERE status = 'MESSAGE_UNMASKED' \
              AND detail->>'requested_by' = 'shared-token' \
              AND detail->>'reason' = 'ticket 9: confirm the address'"
        ),
        1
    );
    app.stop();
}
