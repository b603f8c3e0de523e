//! A fixed-bucket histogram of durations, the one shape in which processes report latencies
//! (the router's in-router latency, signaling's join time) in their metrics replies, and in
//! which control renders them for Prometheus (readers take quantiles from that rendering:
//! `loadtest::prom`). Recording is an index search and an add: no allocation, so the router's
//! packet path can record.

use std::time::Duration;

use serde::Serialize;

/// Upper bounds of the buckets, in microseconds: ten a decade (1-1.2-1.5-2-2.5-3-4-5-6-8, as
/// whole µs below 10 µs) from 1 µs to 10 s, so one set serves a packet's few µs in the router
/// and a join's ms to s in signaling, and a quantile read by interpolation inside its bucket is
/// within about 15 % of the truth (1-2-5 buckets left a p50 somewhere between 200 and 500 µs).
/// A sample above the last bound lands in the overflow (`+Inf`) bucket.
pub const BOUNDS_US: [u64; BOUND_COUNT] = bounds();

const BELOW_TEN: [u64; 7] = [1, 2, 3, 4, 5, 6, 8];
const MANTISSAS: [u64; 10] = [10, 12, 15, 20, 25, 30, 40, 50, 60, 80];
/// Decades of [`MANTISSAS`] from 10 µs, then the 10 s bound.
const DECADES: usize = 6;
const BOUND_COUNT: usize = BELOW_TEN.len() + DECADES * MANTISSAS.len() + 1;

const fn bounds() -> [u64; BOUND_COUNT] {
    let mut out = [0u64; BOUND_COUNT];
    let mut i = 0;
    while i < BELOW_TEN.len() {
        out[i] = BELOW_TEN[i];
        i += 1;
    }
    let mut scale = 1u64;
    while i < BOUND_COUNT - 1 {
        let mut m = 0;
        while m < MANTISSAS.len() {
            out[i] = MANTISSAS[m] * scale;
            i += 1;
            m += 1;
        }
        scale *= 10;
    }
    out[BOUND_COUNT - 1] = 10_000_000;
    out
}

/// A fixed-bucket histogram of durations (per-bucket counts, not cumulative).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
        // `counts` is public: one built shorter than `Default`'s skips the sample, not panics.
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
            self.sum_ns = self.sum_ns.saturating_add(d.as_nanos().min(u64::MAX as u128) as u64);
        }
    }
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
        assert_eq!(h.counts.iter().sum::<u64>(), 4);
        assert_eq!(h.sum_ns, 400 + 1_000 + 3_000 + 15_000_000_000);
    }

    #[test]
    fn bounds_rise_ten_a_decade_from_one_microsecond_to_ten_seconds() {
        assert!(BOUNDS_US.windows(2).all(|w| w[0] < w[1]), "{BOUNDS_US:?}");
        assert_eq!((BOUNDS_US[0], BOUNDS_US[7], BOUNDS_US[67]), (1, 10, 10_000_000));
        assert_eq!(&BOUNDS_US[17..27], &[100, 120, 150, 200, 250, 300, 400, 500, 600, 800]);
        // No bucket is wider than 1.5× (2× below 10 µs, where bounds are whole µs) its lower bound.
        assert!(BOUNDS_US.windows(2).skip(7).all(|w| w[1] * 2 <= w[0] * 3), "{BOUNDS_US:?}");
    }
}
