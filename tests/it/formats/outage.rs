//! A registry that does not answer is an outage: the partition pauses,
//! nothing is dead-lettered, `/ready` names it; once it answers, the
//! records flow. The registry here is the real one behind a forwarder
//! that starts late.

use std::time::Duration;

use custodian::app::Running;
use custodian::config::PayloadFormat;
use custodian::formats::schema::Kind;
use reqwest::Method;

use super::{encoder, event, registry_url, schema_text, settings, PATIENCE};
use crate::support::process::free_port;
use crate::support::{wait_until, Table, TestEnv};

/// Forwards connections on `port` to `target` (host:port), from now on.
fn forward(env: &TestEnv, port: u16, target: String) {
    let listener = env
        .rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .expect("the forwarder binds");
    env.rt.spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

#[test]
fn an_unreachable_registry_pauses_the_partition_and_nothing_is_dead_lettered() {
    let env = TestEnv::new(1);
    let avro = encoder(&env, Kind::Avro, &schema_text(Kind::Avro));
    let port = free_port();
    let mut settings = settings(&env, PayloadFormat::Avro, None);
    settings.schema_registry.url = Some(format!("http://127.0.0.1:{port}"));
    settings.schema_registry.timeout = Duration::from_secs(1);
    let app = Running::start(settings).expect("custodian starts");

    let id = uuid::Uuid::new_v4().to_string();
    let bytes = avro
        .encode(event(&id, "7.25", "completed").as_bytes())
        .expect("encoded");
    env.produce(&[(Some("u1"), bytes.as_slice(), Some(0))]);
    let (status, ready) = env.request(&app, Method::GET, "/ready", None, None);
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["failing"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "schema_registry")),
        "{ready}"
    );
    // Paused: several waits pass, and nothing is parked or applied.
    std::thread::sleep(Duration::from_secs(4));
    assert!(env.dlq_entries().is_empty(), "an outage never dead-letters");
    assert_eq!(env.db().rows(Table::Transactions), 0);

    // The registry answers: the record flows.
    let target = registry_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    forward(&env, port, target);
    wait_until(PATIENCE, "applied once the registry answers", || {
        env.db().rows(Table::Transactions) == 1
    });
    assert!(env.dlq_entries().is_empty());
    wait_until(PATIENCE, "ready again", || {
        env.request(&app, Method::GET, "/ready", None, None).0 == 200
    });
    app.stop().expect("graceful stop");
}
