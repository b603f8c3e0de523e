//! What a shard reports for operators: the in-router latency histogram, the shard thread's CPU
//! time, and the shape of the control channel's `metrics` reply (docs/router.md, "Metrics").
//!
//! The latency is measured in the shard shell, never in the engine (which stays sans-IO): from
//! the moment a receive batch was taken from the kernel to the moment the sends it caused were
//! submitted by the flush that followed. The histogram has fixed buckets and lives in the
//! shard, so recording is an index search and an add: no allocation, no atomics, no lock.

use std::time::Duration;

use serde::Serialize;

pub use schema::histogram::{BOUNDS_US as LATENCY_BOUNDS_US, Histogram};

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
    fn thread_cpu_time_moves() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(thread_cpu_time() > before);
    }
}
