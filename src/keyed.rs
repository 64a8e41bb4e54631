//! Key-ordered concurrency (the model of Confluent's Parallel Consumer):
//! the items of one batch run in lanes, one lane per key, up to `limit`
//! lanes at once; a lane runs its items strictly in order. Items without a
//! key have a lane each. Results come back in input order, so the caller's
//! offset bookkeeping does not change: the partition's offset tracker
//! already commits only below the lowest unsettled offset.
//!
//! No actors and no I/O here: the work is the caller's future.

use std::collections::HashMap;
use std::future::Future;

use futures::stream::{self, StreamExt};

/// Groups `keys` (one per item) into lanes of item indices, in first-seen
/// order; `None` keys get a lane each.
pub fn lanes<K: std::hash::Hash + Eq>(
    keys: impl IntoIterator<Item = Option<K>>,
) -> Vec<Vec<usize>> {
    let mut lanes: Vec<Vec<usize>> = Vec::new();
    let mut by_key: HashMap<K, usize> = HashMap::new();
    for (i, key) in keys.into_iter().enumerate() {
        match key {
            Some(key) => {
                let lane = *by_key.entry(key).or_insert_with(|| {
                    lanes.push(Vec::new());
                    lanes.len() - 1
                });
                lanes[lane].push(i);
            }
            None => lanes.push(vec![i]),
        }
    }
    lanes
}

/// Runs `work(i)` for every index of `lanes`, each lane in order, up to
/// `limit` lanes at once (at least one); answers the results by index.
pub async fn run<R, F, Fut>(lanes: Vec<Vec<usize>>, limit: usize, work: F) -> Vec<R>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = R>,
{
    let total: usize = lanes.iter().map(Vec::len).sum();
    let work = &work;
    let mut done: Vec<(usize, R)> = stream::iter(lanes)
        .map(|lane| async move {
            let mut out = Vec::with_capacity(lane.len());
            for i in lane {
                out.push((i, work(i).await));
            }
            out
        })
        .buffer_unordered(limit.max(1))
        .flat_map(stream::iter)
        .collect()
        .await;
    debug_assert_eq!(done.len(), total);
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::time::Duration;

    #[test]
    fn lanes_group_by_key_and_keep_order() {
        let keys = [Some("a"), Some("b"), None, Some("a"), None, Some("b")];
        assert_eq!(lanes(keys), vec![vec![0, 3], vec![1, 5], vec![2], vec![4]]);
    }

    #[tokio::test]
    async fn one_key_runs_in_order_while_keys_overlap_up_to_the_limit() {
        let keys: Vec<Option<u32>> = (0..40).map(|i| Some(i % 8)).collect();
        let log = RefCell::new(Vec::new());
        let running = RefCell::new(0usize);
        let peak = RefCell::new(0usize);
        let results = run(lanes(keys.clone()), 4, |i| {
            let (log, running, peak) = (&log, &running, &peak);
            async move {
                *running.borrow_mut() += 1;
                let now = *running.borrow();
                let top = (*peak.borrow()).max(now);
                *peak.borrow_mut() = top;
                tokio::time::sleep(Duration::from_millis(2)).await;
                log.borrow_mut().push(i);
                *running.borrow_mut() -= 1;
                i * 10
            }
        })
        .await;
        assert_eq!(results, (0..40).map(|i| i * 10).collect::<Vec<_>>());
        assert!(*peak.borrow() <= 4, "never more lanes than the limit");
        assert!(*peak.borrow() > 1, "lanes overlap");
        for key in 0..8 {
            let order: Vec<usize> = log
                .borrow()
                .iter()
                .copied()
                .filter(|i| *i as u32 % 8 == key)
                .collect();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(order, sorted, "key {key} in order");
        }
    }
}
