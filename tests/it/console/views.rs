//! The console's views in headless Chromium with real data: the overview's
//! charts and health, the partitions table (the offsets Kafka holds), the
//! message explorer (search by key, open a message: JSON and binary
//! payloads), dead letters by kind with a previewed bulk replay run as a
//! job and followed to its end; a narrow window. Screenshots of each view go
//! to target/screenshots/.

use std::time::Duration;

use super::browser::{browser, chromedriver, click, eventually, fill, screenshot, text, PATIENCE};
use super::{console_custodian, unknown_event};
use crate::support::{transaction_event, wait_until, Table, TestEnv, TEST_TOKEN};
use fantoccini::{Client, Locator};

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.map_or(0, |v| v.len())
}

/// Picks `value` in the select `css`.
async fn choose(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(&format!("{css} option[value='{value}']")))
        .await
        .unwrap_or_else(|e| panic!("{css} has no {value}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("choose {value} in {css}: {e}"));
}

async fn texts(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.unwrap_or_default() {
        out.push(e.text().await.unwrap_or_default());
    }
    out
}

/// `n` events for keys alice/bob/carol spread over both partitions, with
/// every tenth one a refused amount (a dead letter while the limit holds).
fn traffic(env: &TestEnv, batch: usize, n: usize) {
    let events: Vec<(String, &str)> = (0..n)
        .map(|i| {
            let amount = if i % 10 == 9 { 5000.0 } else { 10.0 + i as f64 };
            let key = ["alice", "bob", "carol"][i % 3];
            let event = transaction_event(
                "transaction.created",
                &format!("{}-{batch}-{i}", env.topic),
                amount,
                "2024-01-01T12:00:00Z",
            );
            (event, key)
        })
        .collect();
    let records: Vec<(Option<&str>, &[u8], Option<i32>)> = events
        .iter()
        .enumerate()
        .map(|(i, (e, k))| (Some(*k), e.as_bytes(), Some((i % 2) as i32)))
        .collect();
    env.produce(&records);
}

/// Traffic in bursts over a few sample intervals (so the charts have a
/// shape) while PostgreSQL refuses large amounts, plus dave's binary and
/// unknown-type records: 220 events, 22 refused, 24 parked in all, every
/// offset committed. Then the limit is raised: the parked ones would now
/// apply (they stay parked until someone replays them). Answers the
/// partitions' ends.
fn traffic_with_24_parked_then_the_limit_raised(env: &TestEnv) -> Vec<i64> {
    env.limit_amounts();
    for batch in 0..4 {
        traffic(env, batch, 40 + batch * 10);
        std::thread::sleep(Duration::from_secs(3));
    }
    let binary: &[u8] = &[0xde, 0xad, 0xbe, 0xef, 0x00];
    let unknown = unknown_event(env);
    env.produce(&[
        (Some("dave"), binary, Some(0)),
        (Some("dave"), unknown.as_bytes(), Some(1)),
    ]);
    wait_until(PATIENCE, "all parked", || env.dlq_entries().len() == 24);
    let high = env.high_watermarks();
    wait_until(PATIENCE, "all committed", || {
        env.committed() == high.iter().map(|h| Some(*h)).collect::<Vec<_>>()
    });
    env.lift_amount_limit();
    high
}

/// Signs in with the shared token (an admin); the token is kept for the
/// tab, never in the URL.
async fn signed_in(c: &Client, ui: &str) {
    c.set_window_size(1280, 1000).await.expect("window size");
    c.goto(ui).await.expect("open the console");
    fill(c, "#token", TEST_TOKEN).await;
    click(c, "#connect").await;
    assert!(!c
        .current_url()
        .await
        .expect("url")
        .as_str()
        .contains(TEST_TOKEN));
}

/// Overview: health and the four charts, drawn from the sample ring, and
/// the integrity line.
async fn the_overview_shows_health_charts_and_the_trail_holding(c: &Client) {
    eventually("health shown", || async {
        text(c, "#health-kafka").await == "ok"
            && text(c, "#health-postgres").await == "ok"
            && text(c, "#health-redis").await == "ok"
    })
    .await;
    eventually("charts drawn", || async {
        count(c, "#chart-settled polyline").await == 1 && count(c, "#chart-lag polyline").await == 1
    })
    .await;
    eventually("integrity line", || async {
        text(c, "#integrity")
            .await
            .starts_with("audit trail: holds (")
    })
    .await;
    screenshot(c, "overview").await;
}

/// Partitions: the offsets Kafka holds, no lag.
async fn the_partitions_show_the_offsets_kafka_holds(c: &Client, topic: &str, high: &[i64]) {
    click(c, "#tab-partitions").await;
    eventually("two partitions", || async {
        count(c, "#partitions tr").await == 2
    })
    .await;
    for (p, end) in high.iter().enumerate() {
        let row = texts(
            c,
            &format!("#partitions tr[data-partition='{topic}/{p}'] td"),
        )
        .await;
        assert_eq!(row[2], "running", "{row:?}");
        assert_eq!(row[3], end.to_string(), "committed, {row:?}");
        assert_eq!(row[5], end.to_string(), "high watermark, {row:?}");
        assert_eq!(row[6], "0", "lag, {row:?}");
    }
    screenshot(c, "partitions").await;
}

/// Explorer: search by key (every row alice's), the next page, a processed
/// message's lifecycle and pretty JSON payload.
async fn the_explorer_finds_by_key_pages_and_opens_a_json_message(c: &Client) {
    // Both lists open with the newest entries, before any search.
    click(c, "#tab-transactions").await;
    eventually("the newest transactions", || async {
        count(c, "#hits tr").await > 0
    })
    .await;
    click(c, "#tab-explorer").await;
    eventually("the newest audit entries", || async {
        count(c, "#x-results tr").await > 0
    })
    .await;
    fill(c, "#x-key", "alice").await;
    click(c, "#x-search").await;
    // The newest entries were there already: wait for alice's to replace them.
    eventually("alice's entries", || async {
        let keys = texts(c, "#x-results tr td:nth-child(4)").await;
        keys.len() == 50 && keys.iter().all(|k| k == "alice")
    })
    .await;
    // The next page continues where the first ended.
    click(c, "#x-more").await;
    eventually("a second page", || async {
        count(c, "#x-results tr").await > 50
    })
    .await;
    fill(c, "#x-key", "").await;
    choose(c, "#x-status", "MESSAGE_PROCESSED").await;
    click(c, "#x-search").await;
    eventually("processed entries", || async {
        count(c, "#x-results tr").await > 0
    })
    .await;
    click(c, "#x-results tr:first-child button.open").await;
    eventually("message opened", || async {
        text(c, "#m-lifecycle").await.contains("MESSAGE_PROCESSED")
            && text(c, "#m-payload")
                .await
                .contains("\"event_type\": \"transaction.created\"")
    })
    .await;
    screenshot(c, "message").await;
}

/// The binary record: hex and base64; a parked message can be replayed
/// from its view.
async fn a_binary_dead_letter_opens_as_hex_and_base64_with_a_replay_button(c: &Client) {
    fill(c, "#x-key", "dave").await;
    choose(c, "#x-status", "MESSAGE_DLQ").await;
    click(c, "#x-search").await;
    eventually("dave's dead letters", || async {
        count(c, "#x-results tr").await == 2
    })
    .await;
    let rows = texts(c, "#x-results tr td:nth-child(6)").await;
    let binary_row = rows
        .iter()
        .position(|t| t == "–")
        .expect("the binary record has no event type")
        + 1;
    click(
        c,
        &format!("#x-results tr:nth-child({binary_row}) button.open"),
    )
    .await;
    eventually("hex shown", || async {
        text(c, "#m-payload").await == "de ad be ef 00"
    })
    .await;
    click(c, "#m-as-base64").await;
    eventually("base64 shown", || async {
        text(c, "#m-payload").await == "3q2+7wA="
    })
    .await;
    assert!(c
        .find(Locator::Css("#m-replay"))
        .await
        .expect("replay button")
        .is_displayed()
        .await
        .expect("shown"));
    screenshot(c, "explorer").await;
}

/// Dead letters: grouped by kind; a bulk replay of the refused kind,
/// previewed, refused without a reason, then run as a job to its end.
async fn a_kind_of_dead_letters_is_replayed_as_a_previewed_job(c: &Client) {
    click(c, "#tab-dlq").await;
    eventually("kinds", || async {
        count(c, "#kinds button.kind").await == 3
    })
    .await;
    let first = c
        .find(Locator::Css("#kinds button.kind"))
        .await
        .expect("a kind");
    assert_eq!(
        first.attr("data-count").await.expect("count").as_deref(),
        Some("22")
    );
    let kind = first.attr("data-kind").await.expect("kind").expect("kind");
    first.click().await.expect("filter by the kind");
    eventually("22 rows", || async { count(c, "#entries tr").await == 22 }).await;
    click(c, "#bulk-preview").await;
    eventually("preview", || async {
        text(c, "#bulk-count").await.starts_with("22 entries match")
    })
    .await;
    // Without a reason nothing starts.
    click(c, "#bulk-replay").await;
    eventually("reason demanded", || async {
        text(c, "#status").await.contains("reason is required")
    })
    .await;
    fill(c, "#reason", "limit raised for the pilot").await;
    click(c, "#bulk-replay").await;
    eventually("the job done", || async {
        text(c, "#job-list .job .job-line")
            .await
            .starts_with("done: 22 replayed, 0 skipped, 0 failed of 22")
    })
    .await;
    eventually("the kind gone from the list", || async {
        count(c, &format!("#kinds button[data-kind='{kind}']")).await == 0
    })
    .await;
    screenshot(c, "dead-letters").await;
}

/// A narrow window: nothing spills sideways out of any view.
async fn no_view_spills_sideways_in_a_narrow_window(c: &Client) {
    c.set_window_size(420, 900).await.expect("narrow");
    for view in ["overview", "partitions", "explorer", "dlq"] {
        click(c, &format!("#tab-{view}")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let overflow = c
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .expect("measure");
        assert!(
            overflow.as_i64().unwrap_or(99) <= 0,
            "{view} spills {overflow} px sideways when narrow"
        );
    }
    click(c, "#tab-overview").await;
    screenshot(c, "overview-narrow").await;
}

#[test]
fn every_view_shows_real_data_and_a_bulk_replay_runs_as_a_job() {
    let env = TestEnv::new(2);
    let mut app = console_custodian(&env);
    let high = traffic_with_24_parked_then_the_limit_raised(&env);
    let (_driver, port) = chromedriver();
    let ui = format!("http://{}/ui", app.http());
    env.rt.block_on(async {
        let c = browser(port).await;
        signed_in(&c, &ui).await;
        the_overview_shows_health_charts_and_the_trail_holding(&c).await;
        the_partitions_show_the_offsets_kafka_holds(&c, &env.topic, &high).await;
        the_explorer_finds_by_key_pages_and_opens_a_json_message(&c).await;
        a_binary_dead_letter_opens_as_hex_and_base64_with_a_replay_button(&c).await;
        a_kind_of_dead_letters_is_replayed_as_a_previewed_job(&c).await;
        no_view_spills_sideways_in_a_narrow_window(&c).await;
        c.close().await.expect("close the browser");
    });
    wait_until(PATIENCE, "replayed ones processed", || {
        env.db().rows(Table::Transactions) == 220
    });
    assert_eq!(
        env.db()
            .replays_by("shared-token", "limit raised for the pilot"),
        22
    );
    app.stop();
}

/// Dead letters page on past the first hundred, and the line a view leaves
/// is not shown in the next.
#[test]
fn dead_letters_page_on_past_the_first_hundred() {
    let env = TestEnv::new(1);
    let mut app = console_custodian(&env);
    let poison: Vec<Vec<u8>> = (0..130)
        .map(|i| format!("not an event {i}").into_bytes())
        .collect();
    let records: Vec<(Option<&str>, &[u8], Option<i32>)> = poison
        .iter()
        .map(|p| (Some("p"), p.as_slice(), Some(0)))
        .collect();
    env.produce(&records);
    wait_until(PATIENCE, "130 parked", || {
        env.db().audit_counts().get("MESSAGE_DLQ") == Some(&130)
    });
    let (_driver, port) = chromedriver();
    let ui = format!("http://{}/ui", app.http());
    env.rt.block_on(async {
        let c = browser(port).await;
        signed_in(&c, &ui).await;
        click(&c, "#tab-dlq").await;
        eventually("the first hundred", || async {
            count(&c, "#entries tr").await == 100
        })
        .await;
        click(&c, "#dlq-more").await;
        eventually("all 130", || async {
            count(&c, "#entries tr").await == 130
        })
        .await;
        assert!(text(&c, "#status").await.starts_with("130 entries"));
        click(&c, "#tab-partitions").await;
        eventually("the dead letters' line gone", || async {
            !text(&c, "#status").await.contains("entries")
        })
        .await;
        c.close().await.expect("close the browser");
    });
    app.stop();
}
