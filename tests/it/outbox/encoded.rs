//! `relay.encodings` (issue 28, part 4): the relay publishes a topic's JSON
//! outbox rows in the wire format with a registry subject's schema (real
//! Karapace), signed over the bytes it sent, so custodian's consumer
//! decodes and applies them under their outbox ids; a row that does not
//! fit the schema is held back with the reason, and publishes once fixed.

use std::time::Duration;

use base64::Engine as _;
use custodian::formats::schema::Kind;
use reqwest::Method;

use crate::formats::{encoder, event, registry_url, schema_text};
use crate::support::process::Launch;
use crate::support::{wait_until, Table, TestEnv};

#[test]
fn the_relay_encodes_a_topics_rows_with_its_subject_and_holds_back_a_row_that_does_not_fit() {
    let env = TestEnv::new(1);
    custodian::store::migrate::run(&env.database_url.clone().into(), Duration::from_secs(30))
        .expect("migrations");
    let avro = encoder(&env, Kind::Avro, &schema_text(Kind::Avro));
    let subject = format!("{}-avro-value", env.topic);
    let good = env
        .db()
        .insert_outbox(
            "tx-enc-1",
            "transaction.created",
            &env.topic,
            event("tx-enc-1", "42.10", "completed").as_bytes(),
        )
        .1;
    let (misfit_row, misfit) = env.db().insert_outbox(
        "tx-enc-2",
        "transaction.created",
        &env.topic,
        br#"{"not":"a transaction event"}"#,
    );
    let mut app = Launch::run(&env)
        .setting("relay.enabled", true)
        .setting("relay.interval", "50ms")
        .setting("relay.retry_backoff_min", "100ms")
        .setting("relay.retry_backoff_max", "200ms")
        .setting("schema_registry.url", registry_url())
        .config(&format!(
            "[[formats]]\ntopic = \"{t}\"\nformat = \"avro\"\n\n\
             [[relay.encodings]]\ntopic = \"{t}\"\nformat = \"avro\"\nsubject = \"{subject}\"\n",
            t = env.topic
        ))
        .spawn();
    app.wait_ready(&env, Duration::from_secs(60));

    wait_until(Duration::from_secs(60), "the good row applied", || {
        env.db().rows(Table::Transactions) == 1
    });
    assert_eq!(
        env.db().count(
            "SELECT count(*) AS n FROM transactions WHERE id = 'tx-enc-1' AND amount = 42.10"
        ),
        1
    );
    // Consumed under its outbox id: the signature held over the encoded bytes.
    let steps: Vec<String> = env
        .db()
        .lifecycle(&good.to_string())
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    assert_eq!(
        steps,
        ["MESSAGE_PUBLISHED", "MESSAGE_RECEIVED", "MESSAGE_PROCESSED"]
    );
    let (status, record) = env.api(&app, Method::GET, &format!("/messages/{good}/record"), None);
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["schema"]["id"], avro.schema_id(), "{record}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(record["payload_base64"].as_str().expect("base64"))
        .expect("decodes");
    let mut header = vec![0];
    header.extend_from_slice(&avro.schema_id().to_be_bytes());
    assert_eq!(
        bytes[..5],
        header[..],
        "the wire format with the subject's id"
    );
    let expected = avro
        .encode(event("tx-enc-1", "42.10", "completed").as_bytes())
        .expect("encoded");
    assert_eq!(bytes, expected, "the record is the row encoded");

    // The misfit: held back, the reason on the row, nothing published.
    wait_until(Duration::from_secs(30), "the misfit refused twice", || {
        env.db()
            .outbox_rows()
            .iter()
            .any(|r| r.id == misfit_row && r.attempts >= 2)
    });
    let row = env
        .db()
        .outbox_rows()
        .into_iter()
        .find(|r| r.id == misfit_row)
        .expect("the misfit row");
    assert_eq!(row.kafka_offset, None, "{row:?}");
    let error = row.last_error.unwrap_or_default();
    assert!(error.contains(&subject), "{error}");
    assert!(env.db().lifecycle(&misfit.to_string()).is_empty());

    // Fixed by the application, it publishes and applies.
    env.db().set_outbox_payload(
        misfit_row,
        event("tx-enc-2", "1.00", "completed").as_bytes(),
    );
    wait_until(Duration::from_secs(60), "the fixed row applied", || {
        env.db().rows(Table::Transactions) == 2
    });
    app.stop();
}
