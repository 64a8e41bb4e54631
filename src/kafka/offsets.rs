//! The offset contract, per partition.
//!
//! Automatic offset storing and committing are off. Every record read is registered here as
//! pending; it is completed only when its outcome is durable (audit rows
//! committed in PostgreSQL, and the Redis dead-letter push acknowledged where
//! there is one). The offset custodian commits is the *watermark*:
//! the lowest offset still pending, or one past the highest offset read when
//! nothing is pending. Every record below the watermark has a durable outcome,
//! so a crash at any instant redelivers only records at or above it.
//! Outcomes may complete out of order (a dead letter can finish before an
//! earlier processed record); the watermark only moves over a contiguous
//! prefix.

use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct OffsetTracker {
    /// Offsets read whose outcome is not yet durable.
    /// Offsets read and not yet durable, with their records' sizes.
    pending: BTreeMap<i64, usize>,
    /// The sum of `pending`'s sizes.
    pending_bytes: usize,
    /// One past the highest offset ever registered.
    next: Option<i64>,
    /// The last watermark handed out by `advance`, so it is committed only
    /// when it moves.
    stored: Option<i64>,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A record was read and is now in flight.
    pub fn register(&mut self, offset: i64, bytes: usize) {
        if let Some(old) = self.pending.insert(offset, bytes) {
            self.pending_bytes -= old;
        }
        self.pending_bytes += bytes;
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// A record's outcome is durable.
    pub fn complete(&mut self, offset: i64) {
        if let Some(bytes) = self.pending.remove(&offset) {
            self.pending_bytes -= bytes;
        }
    }

    /// Bytes of the records read and not yet durable.
    pub fn in_flight_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// How many records are in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The offset to resume from: every record below it is durable.
    pub fn watermark(&self) -> Option<i64> {
        self.pending.keys().next().copied().or(self.next)
    }

    /// The watermark, if it moved since the last call (then it should be
    /// committed).
    pub fn advance(&mut self) -> Option<i64> {
        let watermark = self.watermark()?;
        if self.stored.is_some_and(|s| s >= watermark) {
            return None;
        }
        self.stored = Some(watermark);
        Some(watermark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_read_means_nothing_to_store() {
        let mut t = OffsetTracker::new();
        assert_eq!(t.watermark(), None);
        assert_eq!(t.advance(), None);
    }

    #[test]
    fn watermark_waits_for_the_lowest_pending_offset() {
        let mut t = OffsetTracker::new();
        for o in 10..15 {
            t.register(o, 10);
        }
        assert_eq!(t.watermark(), Some(10));
        t.complete(12);
        t.complete(11);
        assert_eq!(t.advance(), Some(10), "10 is still pending");
        assert_eq!(t.advance(), None, "unchanged watermark is not stored twice");
        t.complete(10);
        assert_eq!(t.advance(), Some(13));
        t.complete(14);
        assert_eq!(t.advance(), None, "13 still pending");
        t.complete(13);
        assert_eq!(t.advance(), Some(15));
        assert_eq!(t.in_flight(), 0);
        assert_eq!(t.in_flight_bytes(), 0);
    }

    #[test]
    fn gaps_in_offsets_do_not_block() {
        // Compacted topics and transaction markers leave gaps.
        let mut t = OffsetTracker::new();
        t.register(3, 10);
        t.register(7, 10);
        t.complete(3);
        assert_eq!(t.advance(), Some(7));
        t.complete(7);
        assert_eq!(t.advance(), Some(8));
    }
}
