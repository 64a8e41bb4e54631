//! Closing the consumer at shutdown (`app.rs`, on a bounded thread): leave
//! the group and destroy the client once every other holder has let go.
//!
//! librdkafka closes a consumer when its last handle drops: the partition
//! actors, their split queues, the Supervisor and the event thread all hold
//! one. Whoever drops last would block for the close (the group's
//! LeaveGroup, the client's threads), so the close is made a step of its
//! own: wait until this is the only handle, then drop it here. Leaving the
//! group lets the next member take the partitions at once rather than after
//! the session timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::kafka::KafkaConsumer;

/// How often to look whether the other holders have let go.
const POLL: Duration = Duration::from_millis(10);

/// Closes `consumer` once it is the last handle; gives up (and drops its own
/// handle without closing) after `patience`. True when it closed.
pub fn close_when_last(mut consumer: Arc<KafkaConsumer>, patience: Duration) -> bool {
    let started = Instant::now();
    loop {
        match Arc::try_unwrap(consumer) {
            Ok(last) => {
                drop(last);
                return true;
            }
            Err(shared) if started.elapsed() < patience => {
                consumer = shared;
                std::thread::sleep(POLL);
            }
            Err(_) => return false,
        }
    }
}
