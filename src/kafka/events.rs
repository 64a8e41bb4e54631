//! The `kafka-events` thread: polls the consumer's main queue, which serves
//! rebalance callbacks, logs and commit callbacks. Every assigned partition
//! is split into its own queue, so records should not arrive here; one that
//! does (fetched in the instant between assignment and split) is not
//! processed out of order: its partition is rewound to it, so the partition
//! actor reads it, in order, from its own queue.
//!
//! It runs on its own OS thread because revocation blocks in the callback
//! until the partition actors have drained, and those actors must keep
//! running meanwhile.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::Offset;
use tokio::sync::oneshot;

use crate::kafka::KafkaConsumer;

pub struct EventLoop {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EventLoop {
    pub fn spawn(consumer: Arc<KafkaConsumer>) -> std::io::Result<Self> {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("kafka-events".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the kafka event loop");
                        return;
                    }
                };
                runtime.block_on(async {
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            polled = consumer.recv() => match polled {
                                Ok(message) => {
                                    let (topic, partition, offset) = (message.topic().to_owned(), message.partition(), message.offset());
                                    tracing::warn!(topic, partition, offset, "record on the main queue; rewinding its partition");
                                    if let Err(e) = consumer.seek(&topic, partition, Offset::Offset(offset), Duration::ZERO) {
                                        tracing::error!(topic, partition, offset, error = %e, "cannot rewind partition");
                                    }
                                }
                                Err(e) => tracing::warn!(error = %e, "kafka consumer error"),
                            }
                        }
                    }
                });
            })?;
        Ok(EventLoop {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops polling and waits for the thread.
    pub fn stop(mut self) {
        if let Some(thread) = &self.thread {
            tracing::debug!(thread = ?thread.thread().name(), "stopping kafka event loop");
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
