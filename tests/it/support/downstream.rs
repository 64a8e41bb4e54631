//! A downstream for the deferred-retry tests: answers 500 for chosen keys
//! while a switch is on (and for chosen messages always), 200 otherwise,
//! after an optional latency; records every request with when it started
//! and ended, so tests can check order per key and that no message is
//! attempted twice at once.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse};

use super::http_thread::HttpThread;

/// One request as the downstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub key: String,
    pub message_id: String,
    /// The payload's `data.n`.
    pub n: i64,
    pub content_type: String,
    /// The W3C `traceparent` the request carried (empty: none).
    pub traceparent: String,
    pub body: Vec<u8>,
    pub status: u16,
    pub started: Instant,
    pub ended: Instant,
}

#[derive(Default)]
pub struct Behaviour {
    /// Keys answered 500 while `failing` is on.
    pub keys: HashSet<String>,
    pub failing: AtomicBool,
    /// Messages (by `data.n`) answered 500 always.
    pub always: HashSet<i64>,
    /// Every message's first this-many requests are answered 500.
    pub fail_attempts: usize,
    pub latency: Duration,
    /// While on, a request is held unanswered (until it is turned off).
    pub hang: AtomicBool,
    /// Requests that were held by `hang`.
    pub hung: AtomicUsize,
}

struct State {
    behaviour: Arc<Behaviour>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Requests received per message id, counted as they arrive.
    tries: Mutex<HashMap<String, usize>>,
}

async fn receive(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let started = Instant::now();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let key = header("x-kafka-key");
    let message_id = header("x-custodian-message-id");
    let n = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["data"]["n"].as_i64())
        .unwrap_or(-1);
    let try_number = state.tries.lock().map_or(usize::MAX, |mut tries| {
        let count = tries.entry(message_id.clone()).or_default();
        *count += 1;
        *count
    });
    let b = &state.behaviour;
    if !b.latency.is_zero() {
        actix_web::rt::time::sleep(b.latency).await;
    }
    if b.hang.load(Ordering::SeqCst) {
        b.hung.fetch_add(1, Ordering::SeqCst);
        while b.hang.load(Ordering::SeqCst) {
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let fail = b.always.contains(&n)
        || try_number <= b.fail_attempts
        || (b.keys.contains(&key) && b.failing.load(Ordering::SeqCst));
    let status = if fail { 500 } else { 200 };
    if let Ok(mut seen) = state.seen.lock() {
        seen.push(Seen {
            key,
            message_id,
            n,
            content_type: header("content-type"),
            traceparent: header("traceparent"),
            body: body.to_vec(),
            status,
            started,
            ended: Instant::now(),
        });
    }
    let code = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(code).json(serde_json::json!({ "status": status }))
}

/// A running downstream on its own thread; stops when dropped.
pub struct KeyedDownstream {
    pub addr: SocketAddr,
    pub behaviour: Arc<Behaviour>,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: Option<HttpThread>,
}

impl KeyedDownstream {
    pub fn start(behaviour: Behaviour) -> KeyedDownstream {
        let behaviour = Arc::new(behaviour);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = web::Data::new(State {
            behaviour: Arc::clone(&behaviour),
            seen: Arc::clone(&seen),
            tries: Mutex::new(HashMap::new()),
        });
        let server = HttpThread::start(2, move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::to(receive))
        });
        KeyedDownstream {
            addr: server.addr,
            behaviour,
            seen,
            server: Some(server),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Ends the failure of `keys`.
    pub fn heal(&self) {
        self.behaviour.failing.store(false, Ordering::SeqCst);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for KeyedDownstream {
    fn drop(&mut self) {
        // A request held by `hang` would hold up the graceful stop.
        self.behaviour.hang.store(false, Ordering::SeqCst);
        drop(self.server.take());
    }
}

/// The isolation tests' messages: key A's first, then B..Z (n from 100)
/// with A's second after the eleventh of them and A's third at the end.
/// Answers the other keys with the messages as (key, n).
pub fn isolation_messages() -> (Vec<String>, Vec<(String, i64)>) {
    let others: Vec<String> = ('B'..='Z').map(String::from).collect();
    let mut messages = vec![("A".to_string(), 0)];
    for (i, key) in others.iter().enumerate() {
        messages.push((key.clone(), 100 + i as i64));
        if i == 10 {
            messages.push(("A".to_string(), 1));
        }
    }
    messages.push(("A".to_string(), 2));
    (others, messages)
}

/// The isolation tests' start: a downstream failing key A, the messages
/// of [`isolation_messages`] produced by `produce`, and the wait until
/// every other key is processed and partition 0 committed to its end
/// while A still fails. `start` starts custodian with the downstream's URL;
/// answers what it returned and the [`Isolation`].
pub fn others_flow_while_a_fails<R>(
    env: &crate::support::TestEnv,
    start: impl FnOnce(&str) -> R,
    produce: impl FnOnce(&[(&str, i64)]) -> std::collections::HashMap<i64, uuid::Uuid>,
) -> (R, Isolation) {
    let down = KeyedDownstream::start(Behaviour {
        keys: HashSet::from(["A".to_string()]),
        failing: true.into(),
        ..Behaviour::default()
    });
    let started = start(&down.url());
    let (others, messages) = isolation_messages();
    let borrowed: Vec<(&str, i64)> = messages.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    let ids = produce(&borrowed);
    let total = messages.len() as i64;
    let patience = Duration::from_secs(60);
    crate::support::wait_until(patience, "B..Z processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED").copied() == Some(total - 3)
    });
    crate::support::wait_until(patience, "committed past A", || {
        env.committed() == vec![Some(total)]
    });
    let isolation = Isolation {
        down,
        others,
        ids,
        total,
    };
    (started, isolation)
}

/// What [`others_flow_while_a_fails`] set up.
pub struct Isolation {
    pub down: KeyedDownstream,
    pub others: Vec<String>,
    pub ids: std::collections::HashMap<i64, uuid::Uuid>,
    pub total: i64,
}

/// A downstream answering 500 always for the messages `ns` (by `data.n`),
/// 200 for every other.
pub fn always_failing(ns: &[i64]) -> KeyedDownstream {
    KeyedDownstream::start(Behaviour {
        always: ns.iter().copied().collect(),
        ..Behaviour::default()
    })
}
