//! The dead-letter console, clicked through in headless Chromium (Debian's
//! chromium and chromium-driver, which `dev/test` installs) the way an
//! operator would: token, list, lifecycle, replay, discard, counters.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{transaction_event, wait_until, TestEnv, TEST_TOKEN};
use custodian::app::Running;
use fantoccini::{Client, ClientBuilder, Locator};

const PATIENCE: Duration = Duration::from_secs(60);

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> (Driver, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian package chromium-driver; dev/test installs it)");
    (Driver(child), port)
}

async fn browser(port: u16) -> Client {
    // Two TLS back ends are linked in; pick one for the WebDriver client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]}),
    );
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..50 {
        if let Ok(client) = ClientBuilder::rustls()
            .expect("TLS setup")
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("chromedriver did not accept a session at {url}");
}

/// Polls the page until `check` holds (the console updates asynchronously).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !check().await {
        assert!(started.elapsed() < PATIENCE, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

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

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// Replaces the text of the input `css` with `value`.
async fn fill(c: &Client, css: &str, value: &str) {
    let field = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    field
        .clear()
        .await
        .unwrap_or_else(|e| panic!("clear {css}: {e}"));
    if !value.is_empty() {
        field
            .send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }
}

async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[test]
fn an_operator_lists_inspects_replays_and_discards_from_the_console() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    env.execute("ALTER TABLE transactions ADD CONSTRAINT test_limit CHECK (amount < 1000)");
    let refused = transaction_event(
        "transaction.created",
        &format!("{}-big", env.topic),
        5000.0,
        "2024-01-01T12:00:00Z",
    );
    let unknown = transaction_event(
        "transaction.exploded",
        &format!("{}-x", env.topic),
        1.0,
        "2024-01-01T12:00:00Z",
    );
    env.produce(&[
        (Some("u1"), refused.as_bytes(), Some(0)),
        (Some("u1"), unknown.as_bytes(), Some(0)),
    ]);
    wait_until(PATIENCE, "two parked", || {
        env.audit_counts().get("MESSAGE_DLQ") == Some(&2)
    });
    let entries = env.dlq_entries();
    let refused_id = entries[0].message_id.to_string();
    let unknown_id = entries[1].message_id.to_string();
    env.execute("ALTER TABLE transactions DROP CONSTRAINT test_limit");

    let (_driver, port) = chromedriver();
    let ui = format!("http://{}/ui", app.http_addr);
    env.rt.block_on(async {
        let c = browser(port).await;
        c.goto(&ui).await.expect("open the console");
        let row = |id: &str, button: &str| format!("tr[data-id='{id}'] button.{button}");

        // A wrong token: the page says so, lists nothing.
        fill(&c, "#token", "wrong-token-0123456789").await;
        click(&c, "#connect").await;
        eventually("the refusal shown", || async {
            text(&c, "#status").await.contains("not valid")
        })
        .await;
        assert!(rows(&c).await.is_empty());

        // The right token: both dead letters listed.
        fill(&c, "#token", TEST_TOKEN).await;
        click(&c, "#connect").await;
        eventually("two rows", || async { rows(&c).await.len() == 2 }).await;
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
        env.rows(common::Table::Transactions) == 1
    });
    let counts = env.audit_counts();
    assert_eq!(counts.get("MESSAGE_REPLAYED"), Some(&1));
    assert_eq!(counts.get("MESSAGE_DISCARDED"), Some(&1));
    assert!(env.dlq_entries().is_empty());
    app.stop().expect("graceful stop");
}
