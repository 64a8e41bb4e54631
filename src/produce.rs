//! `custodian produce`: publishes events and reports what Kafka
//! acknowledged.
//!
//! - interactive: each line read becomes a `Message` event with a
//!   new id, which is printed back once Kafka acknowledged it;
//! - `--synthetic`: generated transaction events, keyed by user,
//!   optionally rate-limited (governor), with a progress bar;
//! - `--format avro|protobuf|json-schema --subject S`: each payload (a
//!   typed line is then the event's JSON itself) written in the Confluent
//!   wire format with the subject's schema (`--schema-file` registers it).

use std::io::{BufRead, IsTerminal, Write};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{Quota, RateLimiter};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::formats::encode::Encoder;
use crate::formats::registry::{Endpoint, Registry};
use crate::formats::schema::Kind;
use crate::handlers::registry::TEXT_MESSAGE_TYPE;
use crate::kafka::client::producer_config;
use crate::synth::Generator;

/// The envelope a line of text travels in: `{eventId, type, timestamp,
/// data: {text}}`.
pub fn text_message(id: uuid::Uuid, text: &str) -> String {
    serde_json::json!({
        "eventId": id,
        "type": TEXT_MESSAGE_TYPE,
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "data": { "text": text },
    })
    .to_string()
}

/// How `produce` writes payloads in a schema format (`--format`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Encoding {
    /// Write payloads in the Confluent wire format with this kind of schema
    /// (needs schema_registry.url); default: plain JSON.
    #[arg(long, value_enum)]
    pub format: Option<EncodingFormat>,
    /// The registry subject whose schema encodes them (its latest version,
    /// or the one --schema-file registers).
    #[arg(long, requires = "format")]
    pub subject: Option<String>,
    /// A schema file (.avsc, .proto, .json) registered under --subject.
    #[arg(long, requires = "subject")]
    pub schema_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EncodingFormat {
    Avro,
    Protobuf,
    JsonSchema,
}

impl Encoding {
    /// The encoder these options name, if any (registering the schema).
    pub async fn encoder(
        &self,
        settings: &crate::config::SchemaRegistrySettings,
    ) -> anyhow::Result<Option<Encoder>> {
        use anyhow::Context as _;
        let Some(format) = self.format else {
            return Ok(None);
        };
        let subject = self
            .subject
            .as_deref()
            .context("--format needs --subject")?;
        let endpoint =
            Endpoint::configured(settings).context("--format needs schema_registry.url")?;
        let registry = Registry::new(endpoint, 16)?;
        let text = match &self.schema_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("--schema-file {}", path.display()))?,
            ),
            None => None,
        };
        let kind = match format {
            EncodingFormat::Avro => Kind::Avro,
            EncodingFormat::Protobuf => Kind::Protobuf,
            EncodingFormat::JsonSchema => Kind::JsonSchema,
        };
        Ok(Some(
            Encoder::new(&registry, subject, kind, text.as_deref()).await?,
        ))
    }
}

/// Reads lines from `input` until it ends; publishes each non-empty line as
/// a message with a new id (also its key), and writes the id to `output`.
/// With a terminal, prompts for each line. Returns how many were sent.
/// With an `encoder`, a line is the event's JSON, written in its format.
pub async fn interactive(
    brokers: &str,
    topic: &str,
    encoder: Option<&Encoder>,
    input: impl BufRead,
    mut output: impl Write,
) -> anyhow::Result<u64> {
    let producer: FutureProducer = producer_config(brokers).create()?;
    let prompt = std::io::stdin().is_terminal();
    let mut sent = 0;
    if prompt {
        eprintln!("type a message and press Enter (Ctrl-D to finish); each is sent to `{topic}`");
        eprint!("> ");
    }
    for line in input.lines() {
        let line = line?;
        let text = line.trim_end_matches('\r');
        if !text.is_empty() {
            let id = uuid::Uuid::new_v4();
            let key = id.to_string();
            let payload = match encoder {
                Some(encoder) => encoder
                    .encode(text.as_bytes())
                    .map_err(|e| anyhow::anyhow!("the line does not fit the schema: {e}"))?,
                None => text_message(id, text).into_bytes(),
            };
            let delivery = producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("Kafka did not acknowledge: {e}"))?;
            writeln!(
                output,
                "{id}  {topic}/{}@{}",
                delivery.partition, delivery.offset
            )?;
            output.flush()?;
            sent += 1;
        }
        if prompt {
            eprint!("> ");
        }
    }
    Ok(sent)
}

pub struct SyntheticOptions {
    pub brokers: String,
    pub topic: String,
    pub events: Synthetic,
    /// Writes each event in a schema format (`--format`).
    pub encoder: Option<Encoder>,
}

/// What a synthetic run sends, and how fast: `custodian produce
/// --synthetic`'s options (the doc comments are its `--help`).
#[derive(Debug, Clone, clap::Args)]
pub struct Synthetic {
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Pin every event to this user (default: spread over --users users).
    #[arg(long)]
    pub user_id: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub users: usize,
    /// Share of events that update an earlier transaction.
    #[arg(long, default_value_t = 0.1)]
    pub update_ratio: f64,
    /// Share of deliberately invalid events, to see the dead-letter queue at work.
    #[arg(long, default_value_t = 0.0)]
    pub poison_ratio: f64,
    /// Messages per second (default: unlimited).
    #[arg(long)]
    pub rate: Option<NonZeroU32>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub acknowledged: u64,
    pub failed: u64,
    pub elapsed: Duration,
}

/// Publishes `count` events, printing progress to stderr every second.
pub async fn synthetic(options: SyntheticOptions) -> anyhow::Result<Report> {
    let producer: FutureProducer = producer_config(&options.brokers).create()?;
    let limiter = options
        .events
        .rate
        .map(|r| RateLimiter::direct(Quota::per_second(r)));
    let mut generator = Generator::new(
        options.events.seed,
        options.events.user_id.clone(),
        options.events.users,
        options.events.update_ratio,
    )
    .with_poison_ratio(options.events.poison_ratio);
    let started = Instant::now();
    let mut report = Report::default();
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut last_progress = Instant::now();
    use futures::StreamExt;
    for _ in 0..options.events.count {
        if let Some(limiter) = &limiter {
            limiter.until_ready().await;
        }
        let mut event = generator.next_event();
        if let Some(encoder) = &options.encoder {
            // A poison event does not fit the schema: it is sent as it is,
            // a wire-format failure for custodian to dead-letter.
            if let Ok(encoded) = encoder.encode(&event.payload) {
                event.payload = encoded;
            }
        }
        let producer = producer.clone();
        let topic = options.topic.clone();
        pending.push(async move {
            let record = FutureRecord::to(&topic)
                .key(&event.key)
                .payload(&event.payload);
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        });
        while pending.len() >= 10_000 {
            tally(&mut report, pending.next().await);
        }
        while let Some(done) = futures::FutureExt::now_or_never(pending.next()) {
            if done.is_none() {
                break;
            }
            tally(&mut report, done);
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            progress(&report, options.events.count, started);
            last_progress = Instant::now();
        }
    }
    while let Some(done) = pending.next().await {
        tally(&mut report, Some(done));
    }
    progress(&report, options.events.count, started);
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    producer.flush(Duration::from_secs(30))?;
    report.elapsed = started.elapsed();
    Ok(report)
}

const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// `[########............]  4000/20000  20%  1998/s` on one redrawn line on a
/// terminal, a plain line otherwise.
fn progress(report: &Report, total: u64, started: Instant) {
    const WIDTH: u64 = 30;
    let done = report.acknowledged + report.failed;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH) as usize;
    let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
    let line = format!(
        "[{}{}] {done:>8}/{total}  {:>3}%  {rate:.0}/s  {} failed",
        "#".repeat(filled),
        ".".repeat(WIDTH as usize - filled.min(WIDTH as usize)),
        (done * 100).checked_div(total).unwrap_or(100),
        report.failed
    );
    if std::io::stderr().is_terminal() {
        eprint!("\r{line}");
    } else {
        eprintln!("{line}");
    }
}

fn tally(report: &mut Report, done: Option<Result<(), rdkafka::error::KafkaError>>) {
    match done {
        Some(Ok(())) => report.acknowledged += 1,
        Some(Err(e)) => {
            report.failed += 1;
            tracing::warn!(error = %e, "produce failed");
        }
        None => {}
    }
}
