//! The dead-letter console, clicked through in headless Chromium (Debian's
//! chromium and chromium-driver, which `dev/test` installs) the way an
//! operator would: token, list, lifecycle, replay, discard, counters.

use super::browser::{browser, chromedriver, click, eventually, fill, text, PATIENCE};
use super::{console_custodian, unknown_event};
use crate::support::{transaction_event, wait_until, Table, TestEnv};
use fantoccini::{Client, Locator};

async fn rows(c: &Client) -> Vec<String> {
    let mut ids = Vec::new();
    for row in c
        .find_all(Locator::Css("#entries tr"))
        .await
        .unwrap_or_default()
    {
        if let Ok(Some(id)) = row.attr("data-id").await {
            ids.push(id);
        }
    }
    ids
}

#[test]
fn an_operator_lists_inspects_replays_and_discards_from_the_console() {
    let env = TestEnv::new(1);
    let mut app = console_custodian(&env);
    env.limit_amounts();
    let refused = transaction_event(
        "transaction.created",
        &format!("{}-big", env.topic),
        5000.0,
        "2024-01-01T12:00:00Z",
    );
    let unknown = unknown_event(&env);
    env.produce(&[
        (Some("u1"), refused.as_bytes(), Some(0)),
        (Some("u1"), unknown.as_bytes(), Some(0)),
    ]);
    wait_until(PATIENCE, "two parked", || {
        env.db().audit_counts().get("MESSAGE_DLQ") == Some(&2)
    });
    let entries = env.dlq_entries();
    let refused_id = entries[0].message_id.to_string();
    let unknown_id = entries[1].message_id.to_string();
    env.lift_amount_limit();

    let token_of = |name: &str, role: &str| {
        let out = crate::support::process::Launch::command(
            &env,
            &["operator", "add", name, "--role", role],
        )
        .output();
        assert!(out.success, "{}{}", out.stdout, out.stderr);
        out.stdout.trim().to_owned()
    };
    let vera = token_of("vera", "viewer");
    let erin = token_of("erin", "operator");
    let (_driver, port) = chromedriver();
    let ui = format!("http://{}/ui", app.http());
    env.rt.block_on(async {
        let c = browser(port).await;
        c.goto(&ui).await.expect("open the console");
        click(&c, "#tab-dlq").await;
        let row = |id: &str, button: &str| format!("tr[data-id='{id}'] button.{button}");

        // A wrong token: the page says so, lists nothing.
        fill(&c, "#token", "wrong-token-0123456789").await;
        click(&c, "#connect").await;
        eventually("the refusal shown", || async {
            text(&c, "#status").await.contains("not valid")
        })
        .await;
        assert!(rows(&c).await.is_empty());

        // A viewer's token: who and which role shown, both dead letters
        // listed, and no action the role cannot take.
        fill(&c, "#token", &vera).await;
        click(&c, "#connect").await;
        eventually("signed in as a viewer", || async {
            text(&c, "#me").await == "signed in as vera (viewer)"
        })
        .await;
        eventually("two rows", || async { rows(&c).await.len() == 2 }).await;
        assert!(
            c.find_all(fantoccini::Locator::Css("#entries button.replay"))
                .await
                .expect("find")
                .is_empty(),
            "a viewer sees no Replay"
        );
        // The operator's own token: the actions appear.
        fill(&c, "#token", &erin).await;
        click(&c, "#connect").await;
        eventually("signed in as an operator", || async {
            text(&c, "#me").await == "signed in as erin (operator)"
        })
        .await;
        click(&c, "#refresh").await;
        eventually("two rows, with actions", || async {
            rows(&c).await.len() == 2
                && !c
                    .find_all(fantoccini::Locator::Css("#entries button.replay"))
                    .await
                    .expect("find")
                    .is_empty()
        })
        .await;
        // The integrity line: the chains verified by GET /audit/verify.
        eventually("the trail verified", || async {
            text(&c, "#integrity")
                .await
                .starts_with("audit trail: holds (")
        })
        .await;

        // A filter narrows the list.
        fill(&c, "#kind", "constraint_violation").await;
        click(&c, "#refresh").await;
        eventually("one row", || async {
            rows(&c).await == [refused_id.clone()]
        })
        .await;

        // The lifecycle of it.
        click(&c, &row(&refused_id, "lifecycle")).await;
        eventually("lifecycle shown", || async {
            text(&c, "#lifecycle").await.contains("MESSAGE_DLQ")
        })
        .await;

        // Replay without a reason is refused by the page; with one it goes.
        click(&c, &row(&refused_id, "replay")).await;
        eventually("reason demanded", || async {
            text(&c, "#status").await.contains("reason is required")
        })
        .await;
        fill(&c, "#reason", "limit raised").await;
        click(&c, &row(&refused_id, "replay")).await;
        eventually("replayed and gone", || async { rows(&c).await.is_empty() }).await;

        // Discard the other one.
        fill(&c, "#kind", "").await;
        click(&c, "#refresh").await;
        eventually("the other row", || async {
            rows(&c).await == [unknown_id.clone()]
        })
        .await;
        click(&c, &row(&unknown_id, "discard")).await;
        eventually("discarded", || async { rows(&c).await.is_empty() }).await;

        // Live counters from /metrics.
        eventually("counters", || async {
            text(&c, "#processed").await == "1"
                && text(&c, "#parked").await == "2"
                && text(&c, "#depth").await == "0"
        })
        .await;
        c.close().await.expect("close the browser");
    });
    wait_until(PATIENCE, "the replayed one processed", || {
        env.db().rows(Table::Transactions) == 1
    });
    let counts = env.db().audit_counts();
    assert_eq!(counts.get("MESSAGE_REPLAYED"), Some(&1));
    assert_eq!(counts.get("MESSAGE_DISCARDED"), Some(&1));
    // Each action records who the token says, and that it came from the
    // console.
    assert_eq!(env.db().actions_by("erin"), 2);
    assert_eq!(
        env.db().count(
            "SELECT count(*) AS n FROM audit_log WHERE detail->>'requested_by' = 'erin' \
              AND detail->'operator'->>'channel' = 'console'"
        ),
        2
    );
    assert!(env.dlq_entries().is_empty());
    app.stop();
}
