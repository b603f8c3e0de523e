//! A fixed-bucket histogram of durations, the one shape in which processes report latencies
//! (the router's in-router latency, signaling's join time) in their metrics replies, and in
//! which control renders them for Prometheus. Recording is an index search and an add: no
//! allocation, so the router's packet path can record.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds of the buckets, in microseconds: ten a decade (1-1.2-1.5-2-2.5-3-4-5-6-8, as
/// whole µs below 10 µs) from 1 µs to 10 s, so one set serves a packet's few µs in the router
/// and a join's ms to s in signaling, and a quantile read by interpolation inside its bucket is
/// within about 15 % of the truth (1-2-5 buckets left a p50 somewhere between 200 and 500 µs).
/// A sample above the last bound lands in the overflow (`+Inf`) bucket.
pub const BOUNDS_US: [u64; 68] = bounds();

const fn bounds() -> [u64; 68] {
    const MANTISSAS: [u64; 10] = [10, 12, 15, 20, 25, 30, 40, 50, 60, 80];
    const BELOW_TEN: [u64; 7] = [1, 2, 3, 4, 5, 6, 8];
    let mut out = [0u64; 68];
    let mut i = 0;
    while i < BELOW_TEN.len() {
        out[i] = BELOW_TEN[i];
        i += 1;
    }
    let mut scale = 1u64;
    while i < 67 {
        let mut m = 0;
        while m < MANTISSAS.len() {
            out[i] = MANTISSAS[m] * scale;
            i += 1;
            m += 1;
        }
        scale *= 10;
    }
    out[67] = 10_000_000;
    out
}

/// A fixed-bucket histogram of durations (per-bucket counts, not cumulative).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// `counts[i]` holds samples in `(bound[i-1], bound[i]]`; the last entry is the overflow.
    /// `BOUNDS_US.len() + 1` entries (a `Vec`: serde has no impls for arrays this long; it is
    /// allocated once, so recording still allocates nothing).
    pub counts: Vec<u64>,
    /// Sum of all samples, in nanoseconds.
    pub sum_ns: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram { counts: vec![0; BOUNDS_US.len() + 1], sum_ns: 0 }
    }
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = d.as_nanos().div_ceil(1000).min(u64::MAX as u128) as u64;
        let i = BOUNDS_US.partition_point(|&b| b < us);
        // Only a histogram deserialized with fewer counts lacks the slot; it skips the sample.
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
            self.sum_ns = self.sum_ns.saturating_add(d.as_nanos().min(u64::MAX as u128) as u64);
        }
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
        h.record(Duration::from_micros(3)); // (2, 3]
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
        // 90 samples of 45 µs (bucket (40, 50]) and 10 of 700 µs (bucket (600, 800]).
        for _ in 0..90 {
            h.record(Duration::from_micros(45));
        }
        for _ in 0..10 {
            h.record(Duration::from_micros(700));
        }
        // p50: rank 50 of 90 in (40, 50] → 40 + 10 × 50/90.
        let p50 = h.quantile_us(0.5).unwrap();
        assert!((p50 - (40.0 + 10.0 * 50.0 / 90.0)).abs() < 1e-9, "{p50}");
        // p99: rank 99, 9th of 10 in (600, 800] → 600 + 200 × 0.9.
        let p99 = h.quantile_us(0.99).unwrap();
        assert!((p99 - 780.0).abs() < 1e-9, "{p99}");
        // p90 is the last sample of the first bucket: its upper bound.
        assert!((h.quantile_us(0.9).unwrap() - 50.0).abs() < 1e-9);
        assert_eq!(h.quantile_us(1.5), None);
    }

    #[test]
    fn bounds_rise_ten_a_decade_from_one_microsecond_to_ten_seconds() {
        assert!(BOUNDS_US.windows(2).all(|w| w[0] < w[1]), "{BOUNDS_US:?}");
        assert_eq!((BOUNDS_US[0], BOUNDS_US[7], BOUNDS_US[67]), (1, 10, 10_000_000));
        assert_eq!(&BOUNDS_US[17..27], &[100, 120, 150, 200, 250, 300, 400, 500, 600, 800]);
        // No bucket is wider than 1.5× (2× below 10 µs, where bounds are whole µs) its lower bound.
        assert!(BOUNDS_US.windows(2).skip(7).all(|w| w[1] * 2 <= w[0] * 3), "{BOUNDS_US:?}");
    }

    #[test]
    fn overflow_quantile_is_the_last_bound() {
        let mut h = Histogram::default();
        h.record(Duration::from_secs(20));
        assert_eq!(h.quantile_us(0.99), Some(10_000_000.0));
    }
}
