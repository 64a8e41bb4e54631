//! The partition actor's gate on a retry partition: records go on in
//! offset order, none before its due time. Records read but not yet due
//! are held here (not registered, so not acknowledged, so the committed
//! offset stays below them); while any is held the partition is not read,
//! which pauses just this partition.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::kafka::envelope::Envelope;
use crate::pipeline::retry_headers::{claimed_due, SUFFIX};

/// Longest a claimed due time can hold a partition at once (the claim is
/// read before the signature is checked: a forged one cannot stall the
/// partition for longer).
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// Records of one retry partition waiting for their due time.
#[derive(Debug, Default)]
pub struct DueGate {
    /// Whether the partition is a retry topic's (otherwise the gate passes
    /// everything on).
    enabled: bool,
    /// Read, not yet due, in offset order.
    held: VecDeque<Envelope>,
}

impl DueGate {
    pub fn new(topic: &str) -> Self {
        DueGate {
            enabled: topic.ends_with(SUFFIX),
            held: VecDeque::new(),
        }
    }

    /// Takes newly read `records`; answers those due at `now`, in order, up
    /// to the first that is not.
    pub fn admit(&mut self, records: Vec<Envelope>, now: DateTime<Utc>) -> Vec<Envelope> {
        if !self.enabled {
            return records;
        }
        self.held.extend(records);
        self.release(now)
    }

    /// The held records due at `now`, in order, up to the first that is not.
    pub fn release(&mut self, now: DateTime<Utc>) -> Vec<Envelope> {
        let mut ready = Vec::new();
        while self.held.front().is_some_and(|e| wait(e, now).is_zero()) {
            ready.extend(self.held.pop_front());
        }
        ready
    }

    /// How long until the head record is due; `None` when nothing is held.
    pub fn wait(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.held.front().map(|e| wait(e, now))
    }
}

fn wait(envelope: &Envelope, now: DateTime<Utc>) -> Duration {
    claimed_due(envelope)
        .and_then(|due| (due - now).to_std().ok())
        .unwrap_or_default()
        .min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, due: Option<DateTime<Utc>>) -> Envelope {
        Envelope {
            headers: due
                .map(|d| {
                    let text = d.to_rfc3339();
                    vec![(
                        crate::pipeline::retry_headers::DUE_HEADER.to_owned(),
                        Some(text.into_bytes()),
                    )]
                })
                .unwrap_or_default(),
            ..Envelope::at("t.retry", 0, offset, None)
        }
    }

    #[test]
    fn records_go_on_in_order_none_before_its_due_time() {
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(5);
        let mut gate = DueGate::new("t.retry");
        let ready = gate.admit(
            vec![
                record(0, Some(now)),
                record(1, None),
                record(2, Some(later)),
                record(3, None),
            ],
            now,
        );
        assert_eq!(
            ready.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![0, 1]
        );
        // The head is due in 5 s; what is behind it waits too.
        assert_eq!(gate.wait(now), Some(Duration::from_secs(5)));
        assert!(gate.release(now).is_empty());
        let ready = gate.release(later);
        assert_eq!(
            ready.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(gate.wait(later), None);
        // Other topics pass through.
        let mut plain = DueGate::new("t");
        assert_eq!(plain.admit(vec![record(0, Some(later))], now).len(), 1);
    }
}
