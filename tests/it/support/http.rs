//! Talking to a running custodian over HTTP: API calls with the test token,
//! plain GETs and metrics. Every call takes an [`HttpTarget`]: an address,
//! a `Running` app or a child-process `Instance`.

use super::*;

/// Something custodian answers HTTP at: an address, or a running app.
pub trait HttpTarget {
    fn http_addr(&self) -> std::net::SocketAddr;
}

impl HttpTarget for std::net::SocketAddr {
    fn http_addr(&self) -> std::net::SocketAddr {
        *self
    }
}

impl HttpTarget for custodian::app::Running {
    fn http_addr(&self) -> std::net::SocketAddr {
        self.http_addr
    }
}

impl<T: HttpTarget + ?Sized> HttpTarget for &T {
    fn http_addr(&self) -> std::net::SocketAddr {
        (**self).http_addr()
    }
}

/// The API token every test's custodian is configured with.
pub const TEST_TOKEN: &str = "test-token-0123456789abcdef";
/// The key every test's custodian signs steering headers with.
pub const TEST_HEADER_KEY: &str = "test-header-key-0123456789abcdef0123";

impl TestEnv {
    /// An API call with the test token; answers status and JSON body.
    pub fn api(
        &self,
        addr: impl HttpTarget,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.request(addr, method, path, body, Some(TEST_TOKEN))
    }

    /// An HTTP call with any token (or none); answers status and JSON body.
    pub fn request(
        &self,
        addr: impl HttpTarget,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        self.rt.block_on(async {
            let addr = addr.http_addr();
            let mut request =
                reqwest::Client::new().request(method, format!("http://{addr}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.expect("HTTP request");
            let status = response.status().as_u16();
            let text = response.text().await.expect("body");
            let json = serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!("{path} answered {status} with a non-JSON body ({e}): {text}")
            });
            (status, json)
        })
    }

    pub fn get(&self, addr: impl HttpTarget, path: &str) -> (u16, String) {
        self.rt.block_on(async {
            let response = reqwest::get(format!("http://{}{path}", addr.http_addr()))
                .await
                .expect("HTTP request");
            let status = response.status().as_u16();
            (status, response.text().await.expect("body"))
        })
    }

    /// The sum of a counter's or gauge's series whose labels include
    /// `topic="<this test's topic>"`.
    pub fn metric(&self, addr: impl HttpTarget, name: &str) -> f64 {
        let (_, text) = self.get(addr, "/metrics");
        let topic = format!("topic=\"{}\"", self.topic);
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&topic))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The sum of the series of `name` whose labels contain `labels`
    /// (any topic).
    pub fn metric_any(&self, addr: impl HttpTarget, name: &str, labels: &str) -> f64 {
        let (_, text) = self.get(addr, "/metrics");
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// How many partitions the instance at `addr` owns, from `/ready`
    /// (`None` before it has an assignment, or while it does not answer).
    pub fn assigned_partitions(&self, addr: impl HttpTarget) -> Option<u64> {
        let (_, body) = self.get(addr, "/ready");
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["kafka"]["assigned_partitions"].as_u64())
    }

    /// `/ready` answers 503 and names `dependency` as failing.
    pub fn assert_unready(&self, addr: impl HttpTarget, dependency: &str) {
        let (status, body) = self.get(addr, "/ready");
        assert_eq!(status, 503, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
        assert!(
            body["failing"]
                .as_array()
                .is_some_and(|f| f.iter().any(|d| d == dependency)),
            "{dependency} not named failing: {body}"
        );
    }

    /// `GET /audit/reconcile` of this env's topic: no gaps, and `in_retry`
    /// offsets still in retry.
    pub fn assert_reconciled(&self, addr: impl HttpTarget, in_retry: i64) {
        let path = format!("/audit/reconcile?topic={}", self.topic);
        let (status, report) = self.api(addr, reqwest::Method::GET, &path, None);
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["totals"]["in_retry"], in_retry, "{report}");
        assert_eq!(report["gaps"], 0, "{report}");
    }

    /// `GET /audit/verify`: every hash chain holds.
    pub fn assert_chains_hold(&self, addr: impl HttpTarget) -> serde_json::Value {
        let (status, verify) = self.api(addr, reqwest::Method::GET, "/audit/verify", None);
        assert_eq!(status, 200, "{verify}");
        assert_eq!(verify["holds"], true, "{verify}");
        verify
    }
}
