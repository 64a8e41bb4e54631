//! Traces in the console (issue 29), in headless Chromium: with traces on,
//! the message view shows the record's trace id, and the explorer finds
//! the trace's entries by it.

use std::time::Duration;

use super::browser::{admin_console, chromedriver, click, eventually, fill, text, PATIENCE};
use crate::support::otlp::Receiver;
use crate::support::process::Launch;
use crate::support::{transaction_event, wait_until, TestEnv};

#[test]
fn the_message_view_shows_the_trace_id_and_the_explorer_finds_it() {
    let env = TestEnv::new(1);
    let receiver = Receiver::start();
    let mut app = Launch::run(&env)
        .setting("telemetry.otlp_endpoint", receiver.url())
        .spawn();
    app.wait_ready(&env, Duration::from_secs(60));
    let trace = "5b8efff798038103d269b633813fc60c";
    let event = transaction_event(
        "transaction.created",
        "tx-seen",
        2.0,
        "2024-01-01T12:00:00Z",
    );
    env.produce_with_headers(
        event.as_bytes(),
        &[(
            "traceparent",
            format!("00-{trace}-eee19b7ec3c1b174-01").as_bytes(),
        )],
    );
    wait_until(PATIENCE, "processed", || {
        env.db().audited("MESSAGE_PROCESSED") == 1
    });
    let (_driver, port) = chromedriver();
    let ui = format!("http://{}/ui", app.http());
    env.rt.block_on(async {
        let c = admin_console(port, &ui).await;
        click(&c, "#tab-explorer").await;
        fill(&c, "#x-trace-id", trace).await;
        click(&c, "#x-search").await;
        eventually("the trace's entry", || async {
            text(&c, "#x-results").await.contains("MESSAGE_PROCESSED")
        })
        .await;
        eventually("the message opened", || async {
            match c
                .find(fantoccini::Locator::Css(
                    "#x-results tr:first-child button.open",
                ))
                .await
            {
                Ok(button) => button.click().await.is_ok(),
                Err(_) => false,
            }
        })
        .await;
        eventually("its trace id shown", || async {
            text(&c, "#m-trace").await == format!("trace id {trace}")
        })
        .await;
        c.close().await.expect("close the browser");
    });
    app.stop();
}
