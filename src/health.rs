//! What `/ready` needs to know about Kafka: whether this instance currently
//! holds a known assignment (possibly empty: more instances than partitions).
//! Written by the rebalance callbacks, read by the HTTP handlers.

use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Debug)]
pub struct Health {
    /// Assigned partition count; -1 while no assignment is known.
    assigned: AtomicI64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            assigned: AtomicI64::new(-1),
        }
    }
}

impl Health {
    pub fn set_assignment(&self, partitions: Option<usize>) {
        let value = partitions.map_or(-1, |p| p as i64);
        self.assigned.store(value, Ordering::Release);
    }

    /// The number of assigned partitions, once an assignment is known.
    pub fn assignment(&self) -> Option<usize> {
        let value = self.assigned.load(Ordering::Acquire);
        (value >= 0).then_some(value as usize)
    }
}
