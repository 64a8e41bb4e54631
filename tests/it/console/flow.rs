//! Flow control in the console (issue 29), in headless Chromium: an
//! operator pauses one partition with a reason, sees it held (who and why)
//! and the pause listed, while the other partition flows; resumes it from
//! the list, and its message is applied.

use std::time::Duration;

use fantoccini::Locator;

use super::browser::{
    admin_console, chromedriver, click, eventually, fill, screenshot, text, PATIENCE,
};
use crate::support::process::Launch;
use crate::support::{transaction_event, wait_until, TestEnv};

#[test]
fn an_operator_pauses_a_partition_sees_it_held_and_resumes_it() {
    let env = TestEnv::new(2);
    let mut app = Launch::run(&env)
        .setting("flow.poll_interval", "200ms")
        .spawn();
    app.wait_ready(&env, Duration::from_secs(60));
    let (_driver, port) = chromedriver();
    let ui = format!("http://{}/ui", app.http());
    let topic = env.topic.clone();
    env.rt.block_on(async {
        let c = admin_console(port, &ui).await;
        click(&c, "#tab-partitions").await;
        c.find(Locator::Css("#f-kind option[value='partition']"))
            .await
            .expect("the partition choice")
            .click()
            .await
            .expect("choose partition");
        fill(&c, "#f-topic", &topic).await;
        fill(&c, "#f-partition", "0").await;
        // Refused without a reason.
        click(&c, "#f-pause").await;
        eventually("a reason demanded", || async {
            text(&c, "#status").await.contains("reason is required")
        })
        .await;
        fill(&c, "#f-reason", "ticket 77: downstream migration").await;
        click(&c, "#f-pause").await;
        let row = format!("#partitions tr[data-partition='{topic}/0'] td.state");
        eventually("partition 0 held, with who and why", || async {
            let state = text(&c, &row).await;
            state.starts_with("held")
                && state.contains("shared-token")
                && state.contains("ticket 77")
        })
        .await;
        assert!(text(&c, "#f-pauses").await.contains("ticket 77"));
        screenshot(&c, "flow-held").await;
        c.close().await.expect("close the browser");
    });

    let event =
        |id: &str| transaction_event("transaction.created", id, 1.0, "2024-01-01T12:00:00Z");
    let (held, free) = (event("tx-c0"), event("tx-c1"));
    env.produce(&[
        (Some("k0"), held.as_bytes(), Some(0)),
        (Some("k1"), free.as_bytes(), Some(1)),
    ]);
    wait_until(PATIENCE, "partition 1's applied", || {
        env.db().audited("MESSAGE_PROCESSED") == 1
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        env.db().audited("MESSAGE_PROCESSED"),
        1,
        "partition 0's waits"
    );

    env.rt.block_on(async {
        let c = admin_console(port, &ui).await;
        click(&c, "#tab-partitions").await;
        fill(&c, "#f-reason", "migration done").await;
        click(&c, "#f-pauses button.resume").await;
        let row = format!("#partitions tr[data-partition='{topic}/0'] td.state");
        eventually("partition 0 running again", || async {
            text(&c, &row).await == "running"
        })
        .await;
        c.close().await.expect("close the browser");
    });
    wait_until(PATIENCE, "partition 0's applied", || {
        env.db().audited("MESSAGE_PROCESSED") == 2
    });
    app.stop();
}
