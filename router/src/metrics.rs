//! What a shard reports for operators: the in-router latency histogram, the shard thread's CPU
//! time, and the shape of the control channel's `metrics` reply (docs/router.md, "Metrics").
//!
//! The latency is measured in the shard shell, never in the engine (which stays sans-IO): from
//! the moment a receive batch was taken from the kernel to the moment the sends it caused were
//! submitted by the flush that followed. The histogram has fixed buckets and lives in the
//! shard, so recording is an index search and an add: no allocation, no atomics, no lock.

use std::time::Duration;

use serde::Serialize;

/// Upper bounds of the latency buckets, in microseconds: log-spaced (1-2-5) from 1 µs to 100 ms.
/// A sample above the last bound lands in the overflow (`+Inf`) bucket.
pub const LATENCY_BOUNDS_US: [u64; 16] =
    [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000];

/// A fixed-bucket histogram of durations (per-bucket counts, not cumulative).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Histogram {
    /// `counts[i]` holds samples in `(bound[i-1], bound[i]]`; the last entry is the overflow.
    pub counts: [u64; LATENCY_BOUNDS_US.len() + 1],
    /// Sum of all samples, in nanoseconds.
    pub sum_ns: u64,
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = d.as_nanos().div_ceil(1000).min(u64::MAX as u128) as u64;
        let i = LATENCY_BOUNDS_US.partition_point(|&b| b < us);
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

/// [`Histogram::quantile_us`] over per-bucket counts with the bounds [`LATENCY_BOUNDS_US`]
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
            let Some(&upper) = LATENCY_BOUNDS_US.get(i) else {
                return LATENCY_BOUNDS_US.last().map(|&b| b as f64);
            };
            let lower = if i == 0 { 0 } else { LATENCY_BOUNDS_US[i - 1] };
            let within = (rank - seen as f64) / c as f64;
            return Some(lower as f64 + (upper - lower) as f64 * within);
        }
        seen += c;
    }
    LATENCY_BOUNDS_US.last().map(|&b| b as f64)
}

/// CPU time the calling thread has used (user + system), from `CLOCK_THREAD_CPUTIME_ID`.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Engine counters that count drops: a packet that came in or should have gone out and did not.
/// The `metrics` reply lists them under `drops`, so readers label them by reason.
pub const DROP_REASONS: &[&str] = &[
    "unknown_kind",
    "stun_malformed",
    "stun_unknown_ufrag",
    "stun_rejected",
    "dtls_unknown_address",
    "dtls_failed",
    "srtp_unknown_address",
    "srtp_not_ready",
    "srtp_auth_failed",
    "srtp_replayed",
    "srtp_other",
    "rtp_malformed",
    "rtp_unknown_ssrc",
    "rtp_unknown_rid",
    "rtp_duplicates",
    "rtcp_malformed",
    "feedback_unknown_ssrc",
    "plis_throttled",
    "retransmits_over_budget",
    "transmit_too_large",
    "sctp_dropped",
    "dcep_malformed",
];

/// What the shard shell adds to the engine's counters in the `metrics` reply.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShellMetrics {
    pub io: crate::io::IoStats,
    /// Latency from a receive batch to the flush of the sends it caused.
    pub latency: Histogram,
    /// The bounds of `latency`'s buckets, so a reader need not know them.
    pub latency_bounds_us: &'static [u64],
    /// The shard thread's CPU time.
    pub cpu_ns: u64,
    /// Receive passes that returned at least one datagram (`io.rx_datagrams / rx_batches` is
    /// the mean batch).
    pub rx_batches: u64,
    /// The largest receive batch since the previous read (a gauge of the kernel queue's depth
    /// at its worst).
    pub rx_batch_peak: u64,
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
        h.record(Duration::from_millis(150)); // overflow
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[2], 1);
        assert_eq!(h.counts[LATENCY_BOUNDS_US.len()], 1);
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum_ns, 400 + 1_000 + 3_000 + 150_000_000);
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
        h.record(Duration::from_secs(1));
        assert_eq!(h.quantile_us(0.99), Some(100_000.0));
    }

    #[test]
    fn thread_cpu_time_moves() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(thread_cpu_time() > before);
    }
}
