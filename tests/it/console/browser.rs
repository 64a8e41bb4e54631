//! Headless Chromium for the console tests (Debian's chromium and
//! chromium-driver, which `dev/test` installs): a driver process, a browser
//! session, and the few page actions the tests use.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn chromedriver() -> (Driver, u16) {
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

pub async fn browser(port: u16) -> Client {
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
pub async fn eventually<F, Fut>(what: &str, mut check: F)
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

/// Clicks the element `css`. The console re-renders lists after each
/// answer, so an element found a moment ago can be replaced before the
/// click lands (a stale element): it is found again, until `PATIENCE`.
pub async fn click(c: &Client, css: &str) {
    let started = std::time::Instant::now();
    loop {
        let clicked = match c.find(Locator::Css(css)).await {
            Ok(element) => element
                .click()
                .await
                .map_err(|e| format!("click {css}: {e}")),
            Err(e) => Err(format!("{css}: {e}")),
        };
        match clicked {
            Ok(()) => return,
            Err(e) if started.elapsed() >= PATIENCE => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Replaces the text of the input `css` with `value`.
pub async fn fill(c: &Client, css: &str, value: &str) {
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

pub async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Saves a PNG of the page as `target/screenshots/{name}.png`.
pub async fn screenshot(c: &Client, name: &str) {
    let dir = std::path::Path::new(
        &std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()),
    )
    .join("screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
}

/// A browser on the console at `ui`, signed in with the shared token (an
/// admin).
pub async fn admin_console(port: u16, ui: &str) -> Client {
    let c = browser(port).await;
    c.set_window_size(1280, 1000).await.expect("window size");
    c.goto(ui).await.expect("open the console");
    fill(&c, "#token", crate::support::TEST_TOKEN).await;
    click(&c, "#connect").await;
    c
}
