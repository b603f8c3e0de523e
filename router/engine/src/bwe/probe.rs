//! Probing: clusters of padding sent above the estimate, and what their arrival rate says.

use std::time::{Duration, Instant};

use super::{BandwidthEstimator, BandwidthUsage, PROBE_DURATION, PROBE_INTERVAL};

const PROBE_RATE_FACTOR: f64 = 2.0;

const PROBE_DESIRED_FACTOR: f64 = 1.2;

/// A probe that would not reach this multiple of the estimate is not worth the padding.
const PROBE_MIN_GAIN: f64 = 1.1;

const PROBE_MAX_DURATION: Duration = Duration::from_millis(500);

/// A cluster lasts long enough to carry this many bytes (ten 1200-byte packets).
const PROBE_MIN_BYTES: f64 = 12_000.0;

const PROBE_MAX_BACKOFF: Duration = Duration::from_secs(4);

const PROBE_QUIET_AFTER_OVERUSE: Duration = Duration::from_secs(1);

const PROBE_MIN_PACKETS: u32 = 5;

const PROBE_MIN_DELIVERED: f64 = 0.8;

const PROBE_SUCCESS_RATIO: f64 = 0.9;

const PROBE_RESULT_FACTOR: f64 = 0.95;

#[derive(Debug)]
pub(super) struct Cluster {
    pub(super) id: u16,
    pub(super) start: Instant,
    pub(super) duration: Duration,
    pub(super) target_bps: f64,
    /// Set when the cluster stops sending.
    pub(super) ended: Option<Instant>,
    /// Stopped early because the delay detector saw the queue it built: failed.
    pub(super) aborted: bool,
    pub(super) sent_bytes: u64,
    pub(super) sent_packets: u32,
    pub(super) first_send_us: i64,
    pub(super) last_send_us: i64,
    pub(super) last_size: u32,
    pub(super) last_seq: Option<i64>,
    pub(super) recv_bytes: u64,
    pub(super) recv_packets: u32,
    pub(super) first_arrival_us: i64,
    pub(super) first_arrival_size: u32,
    pub(super) last_arrival_us: i64,
}

impl Cluster {
    /// A cluster that starts sending at `start`; nothing sent or received yet.
    pub(super) fn new(id: u16, start: Instant, duration: Duration, target_bps: f64) -> Cluster {
        Cluster {
            id,
            start,
            duration,
            target_bps,
            ended: None,
            aborted: false,
            sent_bytes: 0,
            sent_packets: 0,
            first_send_us: 0,
            last_send_us: 0,
            last_size: 0,
            last_seq: None,
            recv_bytes: 0,
            recv_packets: 0,
            first_arrival_us: 0,
            first_arrival_size: 0,
            last_arrival_us: 0,
        }
    }

    pub(super) fn on_sent(&mut self, send_us: i64, seq: i64, size: u32) {
        if self.sent_packets == 0 {
            self.first_send_us = send_us;
        }
        self.sent_packets += 1;
        self.sent_bytes += u64::from(size);
        self.last_send_us = send_us;
        self.last_size = size;
        self.last_seq = Some(self.last_seq.map_or(seq, |s| s.max(seq)));
    }

    pub(super) fn on_received(&mut self, arrival_us: i64, size: u32) {
        if self.recv_packets == 0 || arrival_us < self.first_arrival_us {
            self.first_arrival_us = arrival_us;
            self.first_arrival_size = size;
        }
        if self.recv_packets == 0 || arrival_us > self.last_arrival_us {
            self.last_arrival_us = arrival_us;
        }
        self.recv_packets += 1;
        self.recv_bytes += u64::from(size);
    }

    /// The rate the path demonstrably carried, if it carried (nearly) what was sent.
    pub(super) fn result_bps(&self) -> Option<f64> {
        if self.recv_packets < PROBE_MIN_PACKETS
            || f64::from(self.recv_packets) < PROBE_MIN_DELIVERED * f64::from(self.sent_packets)
        {
            return None;
        }
        let send_span = self.last_send_us - self.first_send_us;
        let recv_span = self.last_arrival_us - self.first_arrival_us;
        if send_span <= 0 || recv_span <= 0 {
            return None;
        }
        let sent = (self.sent_bytes - u64::from(self.last_size)) as f64 * 8e6 / send_span as f64;
        let received =
            self.recv_bytes.saturating_sub(u64::from(self.first_arrival_size)) as f64 * 8e6 / recv_span as f64;
        (received >= PROBE_SUCCESS_RATIO * sent).then(|| PROBE_RESULT_FACTOR * received.min(sent))
    }
}

impl BandwidthEstimator {
    pub(super) fn end_cluster_if_due(&mut self, now: Instant) {
        if let Some(c) = self.cluster.as_mut()
            && c.ended.is_none()
            && now.saturating_duration_since(c.start) >= c.duration
        {
            c.ended = Some(now);
        }
    }

    pub(super) fn maybe_start_probe(&mut self, now: Instant) {
        let estimate = self.estimate();
        let desired = self.desired_bps as f64;
        if self.remb_mode
            || desired <= estimate
            || self.last_probe_start.is_some_and(|t| now.saturating_duration_since(t) < self.probe_backoff)
            || self.last_overuse.is_some_and(|t| now.saturating_duration_since(t) < PROBE_QUIET_AFTER_OVERUSE)
            || self.trendline.state == BandwidthUsage::Overusing
        {
            return;
        }
        let target = (PROBE_RATE_FACTOR * estimate).min(PROBE_DESIRED_FACTOR * desired).min(self.config.max_bps as f64);
        if target < PROBE_MIN_GAIN * estimate {
            return;
        }
        let duration =
            Duration::from_secs_f64(PROBE_MIN_BYTES * 8.0 / target).max(PROBE_DURATION).min(PROBE_MAX_DURATION);
        let id = self.next_cluster_id;
        self.next_cluster_id = self.next_cluster_id.checked_add(1).unwrap_or(1);
        self.cluster = Some(Cluster::new(id, now, duration, target));
        self.last_probe_start = Some(now);
        self.stats.probes_started += 1;
    }

    pub(super) fn probe_succeeded(&mut self, bps: f64) {
        self.stats.probes_succeeded += 1;
        self.probe_backoff = PROBE_INTERVAL;
        if bps > self.delay.bps {
            self.delay.bps = bps;
            // The remembered capacity was wrong or is stale: the path just carried more.
            self.delay.capacity_bps = None;
        }
        self.loss.bps = self.loss.bps.max(bps);
    }

    pub(super) fn probe_failed(&mut self) {
        self.probe_backoff = (self.probe_backoff * 2).min(PROBE_MAX_BACKOFF);
    }
}
