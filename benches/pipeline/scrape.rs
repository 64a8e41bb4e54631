//! Reading custodian's `/metrics` from outside the process: the buckets of
//! one histogram, summed over its label sets.

use std::collections::BTreeMap;

/// Cumulative bucket counts by upper bound, in the exposition's order.
#[derive(Clone, Debug, Default)]
pub struct Buckets(pub Vec<(f64, f64)>);

impl Buckets {
    pub fn parse(exposition: &str, name: &str) -> Buckets {
        let prefix = format!("{name}_bucket{{");
        let mut by_bound: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for line in exposition.lines().filter(|l| l.starts_with(&prefix)) {
            let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
                continue;
            };
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::NAN)
            };
            let count: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0.0);
            let slot = by_bound.entry(bound.to_bits()).or_insert((bound, 0.0));
            slot.1 += count;
        }
        let mut buckets: Vec<_> = by_bound.into_values().collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Buckets(buckets)
    }

    /// The observations made between `earlier` and `self`.
    pub fn since(&self, earlier: &Buckets) -> Buckets {
        Buckets(
            self.0
                .iter()
                .map(|(bound, count)| {
                    let before = earlier
                        .0
                        .iter()
                        .find(|(b, _)| b == bound)
                        .map_or(0.0, |(_, c)| *c);
                    (*bound, count - before)
                })
                .collect(),
        )
    }

    pub fn count(&self) -> f64 {
        self.0.last().map_or(0.0, |(_, c)| *c)
    }

    /// The smallest bucket bound at or below which `q` of the observations
    /// fall (an upper bound on the true quantile).
    pub fn quantile(&self, q: f64) -> f64 {
        let target = (self.count() * q).ceil();
        self.0
            .iter()
            .find(|(_, c)| *c >= target && target > 0.0)
            .map_or(f64::NAN, |(b, _)| *b)
    }
}
