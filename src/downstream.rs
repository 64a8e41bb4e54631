//! `custodian mock-downstream`: a small HTTP service that receives what an
//! `http` route forwards, for demos and tests (seed 001's mock_downstream,
//! seed 002's test client). It answers after `latency`, fails the first
//! `fail_first` requests and then a random `failure_rate` share with 500,
//! answers `/status/<code>` with that code, and logs what it received.
//! `GET /received` lists the requests so far.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;

/// Requests kept for `GET /received`.
const MAX_KEPT: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Options {
    pub bind: SocketAddr,
    pub failure_rate: f64,
    pub latency: Duration,
    pub fail_first: u64,
}

/// One request as received.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub at: DateTime<Utc>,
    pub path: String,
    pub message_id: Option<String>,
    pub event_type: Option<String>,
    pub topic: Option<String>,
    pub offset: Option<String>,
    pub bytes: usize,
    pub status: u16,
}

struct State {
    options: Options,
    seen: AtomicU64,
    received: Arc<Mutex<Vec<Received>>>,
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn receive(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    tokio::time::sleep(state.options.latency).await;
    let n = state.seen.fetch_add(1, Ordering::SeqCst);
    let status = match req.path().strip_prefix("/status/").map(str::parse::<u16>) {
        Some(Ok(code)) if (200..600).contains(&code) => code,
        _ if n < state.options.fail_first => 500,
        _ if rand::rng().random_bool(state.options.failure_rate.clamp(0.0, 1.0)) => 500,
        _ => 200,
    };
    let received = Received {
        at: Utc::now(),
        path: req.path().to_owned(),
        message_id: header(&req, "x-custodian-message-id"),
        event_type: header(&req, "x-event-type"),
        topic: header(&req, "x-kafka-topic"),
        offset: header(&req, "x-kafka-offset"),
        bytes: body.len(),
        status,
    };
    tracing::info!(
        message_id = received.message_id.as_deref().unwrap_or("-"),
        r#type = received.event_type.as_deref().unwrap_or("-"),
        path = %received.path,
        bytes = received.bytes,
        status,
        "mock downstream received"
    );
    if let Ok(mut all) = state.received.lock() {
        // A long demo run keeps the most recent requests only.
        if all.len() >= MAX_KEPT {
            all.drain(..MAX_KEPT / 2);
        }
        all.push(received);
    }
    let code = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(code).json(serde_json::json!({ "status": status }))
}

async fn list(state: web::Data<State>) -> HttpResponse {
    let all = state.received.lock().map(|r| r.clone()).unwrap_or_default();
    HttpResponse::Ok().json(all)
}

/// A running mock downstream (on its own thread).
pub struct MockDownstream {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    server: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl MockDownstream {
    /// Binds and starts serving; returns once the address is known.
    pub fn start(options: Options) -> std::io::Result<MockDownstream> {
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = web::Data::new(State {
            options: options.clone(),
            seen: AtomicU64::new(0),
            received: Arc::clone(&received),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mock-downstream".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(state.clone())
                            .route("/received", web::get().to(list))
                            .default_service(web::to(receive))
                    })
                    .workers(1)
                    .disable_signals()
                    .bind(options.bind)?;
                    let addr = server.addrs().first().copied();
                    let server = server.run();
                    let _ = tx.send((addr, server.handle()));
                    server.await
                })
            })?;
        let (addr, server) = rx
            .recv()
            .map_err(|_| std::io::Error::other("mock downstream did not start"))?;
        let addr = addr.ok_or_else(|| std::io::Error::other("mock downstream bound no address"))?;
        Ok(MockDownstream {
            addr,
            received,
            server,
            thread: Some(thread),
        })
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Stops serving and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let stop = self.server.stop(true);
        futures::executor::block_on(stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MockDownstream {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
        }
    }
}
