//! A schema topic in the console (issue 28, part 3), in headless Chromium:
//! an Avro record's message view names its schema beside the JSON it
//! decodes to, and the dead-letter list shows a parked Avro record decoded
//! after its schema.

use std::time::Duration;

use custodian::formats::schema::Kind;

use super::browser::{
    admin_console, chromedriver, click, eventually, fill, screenshot, text, PATIENCE,
};
use crate::formats::{encoder, event, registry_url, schema_text};
use crate::support::process::Launch;
use crate::support::{wait_until, TestEnv};

#[test]
fn the_console_shows_an_avro_record_decoded_beside_its_schema() {
    let env = TestEnv::new(1);
    let avro = encoder(&env, Kind::Avro, &schema_text(Kind::Avro));
    let mut app = Launch::run(&env)
        .setting("schema_registry.url", registry_url())
        .config(&format!(
            "[[formats]]\ntopic = \"{}\"\nformat = \"avro\"\n",
            env.topic
        ))
        .spawn();
    app.wait_ready(&env, Duration::from_secs(60));
    let applied = avro
        .encode(event("tx-shown", "12.05", "completed").as_bytes())
        .expect("encoded");
    let parked = avro
        .encode(
            event("tx-parked", "3.00", "completed")
                .replace("transaction.created", "transaction.bogus")
                .as_bytes(),
        )
        .expect("encoded");
    env.produce(&[
        (Some("u-avro"), applied.as_slice(), Some(0)),
        (Some("u-avro"), parked.as_slice(), Some(0)),
    ]);
    wait_until(PATIENCE, "one applied, one parked", || {
        env.dlq_entries().len() == 1 && env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&1)
    });
    // The registry keeps one id per schema text, named by the subject that
    // registered it first (perhaps another test's): the id is this one.
    let named = format!("(id {}, avro", avro.schema_id());

    let (_driver, port) = chromedriver();
    let ui = format!("http://{}/ui", app.http());
    env.rt.block_on(async {
        let c = admin_console(port, &ui).await;

        // The explorer's message view: the schema named, the JSON decoded
        // (the decimal exact), while the bytes stay the record's.
        click(&c, "#tab-explorer").await;
        fill(&c, "#x-key", "u-avro").await;
        click(&c, "#x-search").await;
        eventually("the applied record listed", || async {
            text(&c, "#x-results").await.contains("MESSAGE_PROCESSED")
        })
        .await;
        // The list may be drawn again meanwhile (its first load answering
        // after the search): find the button afresh until a click lands.
        eventually("the processed entry opened", || async {
            let open = c.find(fantoccini::Locator::XPath(
                "//tr[td[contains(., 'MESSAGE_PROCESSED')]]//button[contains(@class, 'open')]",
            ));
            match open.await {
                Ok(button) => button.click().await.is_ok(),
                Err(_) => false,
            }
        })
        .await;
        eventually("its schema named, its JSON decoded", || async {
            let meta = text(&c, "#message").await;
            meta.contains(&named)
                && meta.contains("-avro-value")
                && meta.contains("avro; JSON decoded from it")
                && text(&c, "#m-payload").await.contains("\"tx-shown\"")
                && text(&c, "#m-payload").await.contains("12.05")
        })
        .await;
        screenshot(&c, "avro-message").await;
        click(&c, "#m-close").await;

        // The dead letters: the parked record after its schema, decoded.
        click(&c, "#tab-dlq").await;
        eventually("the parked record decoded", || async {
            let cell = text(&c, "#entries tr:first-child td.payload").await;
            cell.contains(&format!("{named})")) && cell.contains("transaction.bogus")
        })
        .await;
        screenshot(&c, "avro-dead-letter").await;
        c.close().await.expect("close the browser");
    });
    app.stop();
}
