//! The partition registry: one small cell per assigned partition, written by
//! its partition actor (a few atomic stores per batch or acknowledgement, no
//! lock held across an await) and read by `GET /status`. The registry holds
//! cells weakly, so a stopped actor's cell disappears with it and a restarted
//! partition's new cell takes its place.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::kafka::KafkaConsumer;

/// What a partition actor is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Reading and handing over batches.
    Running,
    /// Not reading: `max_in_flight` records (or bytes) have no durable
    /// outcome yet, which is how a partition waits for a dependency.
    Paused,
    /// Revoked or shutting down: finishing what is in flight, reading nothing.
    Draining,
    /// Held by an operator's pause (`flow`): reading nothing, committing
    /// nothing past its position.
    Held,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Paused,
            2 => State::Draining,
            3 => State::Held,
            _ => State::Running,
        }
    }
}

/// The last error a partition saw.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LastError {
    pub at: DateTime<Utc>,
    pub message: String,
}

/// A partition's oldest in-flight message, waiting past `flow.stall_after`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Stall {
    /// Its offset in the partition (the explorer finds it by topic,
    /// partition and offset; its id is known once it is decoded).
    pub offset: i64,
    /// Read at this time, and without a durable outcome since.
    pub since: DateTime<Utc>,
}

/// One partition's live figures. Written only by its actor.
#[derive(Debug)]
pub struct PartitionStatus {
    /// `State` as a number.
    state: AtomicU8,
    /// The durable watermark (every record below it has a durable outcome);
    /// -1 until the first record is read.
    watermark: AtomicI64,
    /// Records read and not yet durable.
    in_flight: AtomicU64,
    /// Set on a pipeline failure or a Kafka partition error; kept until the
    /// next one (a brief lock, never held across an await).
    last_error: Mutex<Option<LastError>>,
    /// Why an operator's pause holds it, while one does.
    held: Mutex<Option<String>>,
    /// Its oldest in-flight message, while that waits too long.
    stalled: Mutex<Option<Stall>>,
}

impl Default for PartitionStatus {
    fn default() -> Self {
        PartitionStatus {
            state: AtomicU8::new(0),
            watermark: AtomicI64::new(-1),
            in_flight: AtomicU64::new(0),
            last_error: Mutex::new(None),
            held: Mutex::new(None),
            stalled: Mutex::new(None),
        }
    }
}

impl PartitionStatus {
    pub fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn set_progress(&self, watermark: Option<i64>, in_flight: usize) {
        self.watermark
            .store(watermark.unwrap_or(-1), Ordering::Relaxed);
        self.in_flight.store(in_flight as u64, Ordering::Relaxed);
    }

    pub fn set_error(&self, message: &str) {
        let error = LastError {
            at: Utc::now(),
            message: crate::text::clip(message).to_string(),
        };
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }

    pub fn set_held(&self, why: Option<String>) {
        if let Ok(mut held) = self.held.lock() {
            *held = why;
        }
    }

    pub fn held(&self) -> Option<String> {
        self.held.lock().ok().and_then(|h| h.clone())
    }

    pub fn set_stalled(&self, stall: Option<Stall>) {
        if let Ok(mut stalled) = self.stalled.lock() {
            *stalled = stall;
        }
    }

    pub fn stalled(&self) -> Option<Stall> {
        self.stalled.lock().ok().and_then(|s| s.clone())
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn watermark(&self) -> Option<i64> {
        let w = self.watermark.load(Ordering::Relaxed);
        (w >= 0).then_some(w)
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<LastError> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

/// Every partition this instance owns, by topic and partition.
#[derive(Debug)]
pub struct Registry {
    /// Names this instance in `/status` (host and process id).
    instance: String,
    partitions: Mutex<BTreeMap<(String, i32), Weak<PartitionStatus>>>,
    /// The consumer, for committed offsets and high watermarks on demand
    /// (weak: closing the consumer waits for its last strong reference).
    consumer: OnceLock<Weak<KafkaConsumer>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            instance: instance_name(),
            partitions: Mutex::new(BTreeMap::new()),
            consumer: OnceLock::new(),
        }
    }
}

/// `host/pid`: enough to tell instances apart in a group.
pub fn instance_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}/{}", std::process::id())
}

impl Registry {
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// A fresh cell for a newly started partition actor (replacing any
    /// earlier incarnation's).
    pub fn register(&self, topic: &str, partition: i32) -> Arc<PartitionStatus> {
        let cell = Arc::new(PartitionStatus::default());
        if let Ok(mut map) = self.partitions.lock() {
            map.retain(|_, weak| weak.strong_count() > 0);
            map.insert((topic.to_owned(), partition), Arc::downgrade(&cell));
        }
        cell
    }

    /// The live partitions, in topic and partition order.
    pub fn snapshot(&self) -> Vec<((String, i32), Arc<PartitionStatus>)> {
        let Ok(map) = self.partitions.lock() else {
            return Vec::new();
        };
        map.iter()
            .filter_map(|(key, weak)| weak.upgrade().map(|cell| (key.clone(), cell)))
            .collect()
    }

    pub fn set_consumer(&self, consumer: &Arc<KafkaConsumer>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    pub fn consumer(&self) -> Option<Arc<KafkaConsumer>> {
        self.consumer.get().and_then(Weak::upgrade)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_partitions_cell_leaves_the_snapshot() {
        let registry = Registry::default();
        let a = registry.register("t", 0);
        let b = registry.register("t", 1);
        a.set_progress(Some(7), 3);
        b.set_state(State::Draining);
        let snap = registry.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].1.watermark(), Some(7));
        assert_eq!(snap[0].1.in_flight(), 3);
        assert_eq!(snap[1].1.state(), State::Draining);
        drop(snap);
        drop(b);
        let snap = registry.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].0, ("t".to_owned(), 0));
    }

    #[test]
    fn a_restarted_partition_replaces_its_old_cell() {
        let registry = Registry::default();
        let old = registry.register("t", 0);
        old.set_error("enricher unavailable");
        let new = registry.register("t", 0);
        let snap = registry.snapshot();
        assert_eq!(snap.len(), 1);
        assert!(Arc::ptr_eq(&snap[0].1, &new));
        assert!(snap[0].1.last_error().is_none());
    }
}
