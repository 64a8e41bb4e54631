//! What custodian calls lag, computed in one place: the messages between
//! the last committed offset and the partition's end (high watermark).
//! The partitions table of `/status` and `custodian status`, the console's
//! lag chart (their sum, sampled) and the `consumer_lag_messages` gauge all
//! show this figure.

/// Messages between the last committed offset and the partition's end (the
/// high watermark, the next offset to be written), or the durable watermark
/// when the group has committed nothing yet. `None` when either end is
/// unknown (Kafka did not answer, or nothing was read or committed).
pub fn lag(
    high_watermark: Option<i64>,
    committed: Option<i64>,
    durable: Option<i64>,
) -> Option<i64> {
    let consumed_to = committed.or(durable)?;
    Some((high_watermark? - consumed_to).max(0))
}

#[cfg(test)]
mod tests {
    use super::lag;

    #[test]
    fn lag_counts_from_the_committed_offset_to_the_high_watermark() {
        assert_eq!(lag(Some(10), Some(7), Some(9)), Some(3));
        assert_eq!(lag(Some(10), Some(10), None), Some(0));
    }

    #[test]
    fn before_the_first_commit_lag_counts_from_the_durable_watermark() {
        assert_eq!(lag(Some(10), None, Some(4)), Some(6));
    }

    #[test]
    fn lag_is_unknown_without_either_end() {
        assert_eq!(lag(None, Some(7), Some(7)), None);
        assert_eq!(lag(Some(10), None, None), None);
    }

    #[test]
    fn a_commit_past_a_stale_high_watermark_is_no_negative_lag() {
        assert_eq!(lag(Some(5), Some(8), None), Some(0));
    }
}
