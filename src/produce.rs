//! `custodian produce --synthetic`: publishes synthetic seed-003 events,
//! optionally rate-limited (governor), and reports what Kafka acknowledged.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{Quota, RateLimiter};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::kafka::client::producer_config;
use crate::synth::Generator;

pub struct SyntheticOptions {
    pub brokers: String,
    pub topic: String,
    pub count: u64,
    pub user_id: Option<String>,
    pub users: usize,
    pub update_ratio: f64,
    /// Share of deliberately invalid events (they end in the DLQ).
    pub poison_ratio: f64,
    /// Messages per second; `None` for as fast as Kafka takes them.
    pub rate: Option<NonZeroU32>,
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
        .rate
        .map(|r| RateLimiter::direct(Quota::per_second(r)));
    let mut generator = Generator::new(
        options.seed,
        options.user_id.clone(),
        options.users,
        options.update_ratio,
    )
    .with_poison_ratio(options.poison_ratio);
    let started = Instant::now();
    let mut report = Report::default();
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut last_progress = Instant::now();
    use futures::StreamExt;
    for _ in 0..options.count {
        if let Some(limiter) = &limiter {
            limiter.until_ready().await;
        }
        let event = generator.next_event();
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
        if last_progress.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "produced {} / {} ({} failed)",
                report.acknowledged, options.count, report.failed
            );
            last_progress = Instant::now();
        }
    }
    while let Some(done) = pending.next().await {
        tally(&mut report, Some(done));
    }
    producer.flush(Duration::from_secs(30))?;
    report.elapsed = started.elapsed();
    Ok(report)
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
