//! A fixed-bucket histogram of durations, the one shape in which processes report latencies
//! (the router's in-router latency, signaling's join time) in their metrics replies, and in
//! which control renders them for Prometheus. Recording is an index search and an add: no
//! allocation, so the router's packet path can record.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds of the buckets, in microseconds: log-spaced (1-2-5) from 1 µs to 10 s, so one
/// set serves a packet's few µs in the router and a join's ms to s in signaling. A sample above
/// the last bound lands in the overflow (`+Inf`) bucket.
pub const BOUNDS_US: [u64; 22] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000, 10_000_000,
];

/// A fixed-bucket histogram of durations (per-bucket counts, not cumulative).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// `counts[i]` holds samples in `(bound[i-1], bound[i]]`; the last entry is the overflow.
    pub counts: [u64; BOUNDS_US.len() + 1],
    /// Sum of all samples, in nanoseconds.
    pub sum_ns: u64,
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = d.as_nanos().div_ceil(1000).min(u64::MAX as u128) as u64;
        let i = BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i] += 1;
        self.sum_ns = self.sum_ns.saturating_add(d.as_nanos().min(u64::MAX as u128) as u64);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0..=1) in microseconds, interpolated linearly inside its bucket (the
    /// way Prometheus' `histogram_quantile` does); `None` without samples. A quantile in the
    /// overflow bucket is reported as the last bound: the histogram knows no more.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        quantile_us(&self.counts, q)
    }
}

/// [`Histogram::quantile_us`] over per-bucket counts with the bounds [`BOUNDS_US`]
/// (shared with readers that rebuild the counts from a scrape).
pub fn quantile_us(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && (seen + c) as f64 >= rank {
            let Some(&upper) = BOUNDS_US.get(i) else {
                return BOUNDS_US.last().map(|&b| b as f64);
            };
            let lower = if i == 0 { 0 } else { BOUNDS_US[i - 1] };
            let within = (rank - seen as f64) / c as f64;
            return Some(lower as f64 + (upper - lower) as f64 * within);
        }
        seen += c;
    }
    BOUNDS_US.last().map(|&b| b as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_their_buckets() {
        let mut h = Histogram::default();
        h.record(Duration::from_nanos(400)); // ≤ 1 µs
        h.record(Duration::from_micros(1)); // a bound belongs to its bucket
        h.record(Duration::from_micros(3)); // (2, 5]
        h.record(Duration::from_secs(15)); // overflow
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[2], 1);
        assert_eq!(h.counts[BOUNDS_US.len()], 1);
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum_ns, 400 + 1_000 + 3_000 + 15_000_000_000);
    }

    #[test]
    fn quantiles_from_known_samples() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_us(0.5), None);
        // 90 samples of 30 µs (bucket (20, 50]) and 10 of 700 µs (bucket (500, 1000]).
        for _ in 0..90 {
            h.record(Duration::from_micros(30));
        }
        for _ in 0..10 {
            h.record(Duration::from_micros(700));
        }
        // p50: rank 50 of 90 in (20, 50] → 20 + 30 × 50/90.
        let p50 = h.quantile_us(0.5).unwrap();
        assert!((p50 - (20.0 + 30.0 * 50.0 / 90.0)).abs() < 1e-9, "{p50}");
        // p99: rank 99, 9th of 10 in (500, 1000] → 500 + 500 × 0.9.
        let p99 = h.quantile_us(0.99).unwrap();
        assert!((p99 - 950.0).abs() < 1e-9, "{p99}");
        // p90 is the last sample of the first bucket: its upper bound.
        assert!((h.quantile_us(0.9).unwrap() - 50.0).abs() < 1e-9);
        assert_eq!(h.quantile_us(1.5), None);
    }

    #[test]
    fn overflow_quantile_is_the_last_bound() {
        let mut h = Histogram::default();
        h.record(Duration::from_secs(20));
        assert_eq!(h.quantile_us(0.99), Some(10_000_000.0));
    }
}
