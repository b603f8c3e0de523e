//! Send-side bandwidth estimation for one subscriber transport.
//!
//! The router stamps every RTP packet it sends to a subscriber with a transport-wide sequence
//! number and reports it with [`BandwidthEstimator::on_packet_sent`]; the subscriber answers with
//! transport-cc feedback (when each packet arrived, or that it did not), which goes in with
//! [`BandwidthEstimator::handle_twcc_feedback`]. Out come [`BandwidthEstimator::estimate_bps`],
//! the rate the allocator may spend on this subscriber, and
//! [`BandwidthEstimator::poll_probe_bytes`], padding to send now so the estimate can climb quickly
//! when the allocator wants more ([`BandwidthEstimator::set_desired_bps`]). No clock, no I/O:
//! every call carries `now`.
//!
//! The design is Google Congestion Control's (libwebrtc's send-side estimator, which LiveKit
//! also ports), reduced to what an SFU needs:
//!
//! ```text
//! feedback ─► match each seq with the sent history (unknown ones counted, never trusted)
//!   ├─► acknowledged rate: bytes that arrived over the last 500 ms of arrival time
//!   ├─► 5 ms send groups ─► delay variation ─► trendline ─► overuse / normal / underuse
//!   │                                                         └─► AIMD ─► delay-based estimate
//!   ├─► loss fraction over 1 s ─► loss-based estimate
//!   └─► probe cluster: received rate ≥ 90 % of sent rate ─► raise both at once
//! estimate = min(delay-based, loss-based), clamped to [min_bps, max_bps]
//! REMB replaces all of it while no transport-cc feedback arrived for 2 s.
//! ```
//!
//! # Delay-based
//! A queue building at the bottleneck shows up as packets arriving further apart than they
//! were sent. Packets sent within 5 ms of each other form a group (a pacer burst; single
//! packets are too noisy to compare), and packets that arrive in a burst after a queue drains
//! join the group before them. For each pair of groups the delay variation is
//! `arrival delta − send delta`. Its running sum (the queueing delay, up to a constant) is
//! smoothed (α = 0.9) and a least-squares line is fitted over the last 20 groups: the slope
//! says whether the queue grows. The slope is scaled by `min(groups seen, 60) × 4` (GCC's gain:
//! a few groups are not trusted as much as a full window) and compared with a threshold that
//! adapts to the noise (slowly up, k = 0.0087/ms; quickly down, k = 0.039/ms; within
//! 6–600 ms) so a jittery path does not read as permanent overuse. Above the threshold for
//! more than 10 ms and two updates while still rising is *overuse*; below its negative is
//! *underuse* (a queue draining); otherwise *normal*.
//!
//! # Rate control (AIMD)
//! On overuse the delay-based estimate drops to 0.85 × the acknowledged rate (what the path
//! demonstrably carried, not what we sent into it), at most once per RTT (10–200 ms, or at
//! once when that rate is under half the estimate), and that rate is remembered as the link
//! capacity. On underuse it holds (the queue is draining;
//! raising now would refill it). On normal it grows: by 8 %/s while no capacity is known or
//! the estimate is far below it, and additively near it (about one packet per response time,
//! RTT + 100 ms, as GCC), stopping at 95 % of the remembered capacity so the bottleneck queue
//! stays empty between probes: an SFU forwards keyframes in bursts and a standing queue is
//! latency for every subscriber's video. More capacity is found by probing, which forgets the
//! remembered capacity when it succeeds. Growth is also capped at 1.5 × the acknowledged rate
//! (+10 kbit/s) so an application-limited sender does not claim bandwidth it never used.
//!
//! # Loss-based
//! Every feedback adds its received and lost counts to a 1 s window (at least 20 packets
//! before judging). Under 2 % it may grow by 8 %/s; 2–10 % holds (random wireless loss is not
//! congestion, and reacting to it is what makes estimators flap); over 10 % it drops to
//! `min(itself, estimate, acknowledged rate) × (1 − 0.5 × loss)`, at most once per window, and
//! the window restarts so the next decision sees only packets sent after the decrease.
//! The acknowledged rate is in the minimum because a drop-tail queue that overflows keeps its
//! delay flat: loss is then the only signal, and what arrived is the best measure of the path.
//!
//! # Probing
//! Additive increase would take tens of seconds to find a link that just got faster. So when
//! the allocator wants more than the estimate, no probe ran for a while (1 s after a success,
//! doubling to 4 s after failures) and no overuse was seen in the last second, a probe cluster
//! starts: for 150 ms (longer at low rates, so it holds at least ten 1200-byte packets) the
//! transport sends at `min(2 × estimate, 1.2 × desired, max)`, media included, with padding
//! from [`BandwidthEstimator::poll_probe_bytes`] filling the rest. Every packet sent while the
//! cluster runs belongs to it. When its feedback is in: sent rate = bytes (without the last) /
//! send span, received rate = bytes (without the first) / arrival span. If the received rate is
//! at least 90 % of the sent rate the path carried it, and both estimates rise at once to
//! 0.95 × the lower of the two; otherwise nothing changes (the delay detector reacts to the
//! queue the probe built, and the cluster stops early if it sees overuse). A success allows the
//! next probe one second later, so the estimate can double every second.
//!
//! # REMB
//! Some clients only send REMB (their own receive-side estimate). It is applied as the whole
//! estimate when no transport-cc feedback arrived for 2 s (or ever), and ignored otherwise: the
//! send-side estimate is better informed. No probing in that mode: without feedback there is
//! nothing to measure a probe with.
//!
//! # Robustness
//! Feedback is untrusted input. Sequence numbers are unwrapped against the highest one sent
//! (u16), reference times against the previous feedback (24 bits of 64 ms); a seq never sent,
//! or already forgotten (the history keeps 2 s, at most 16384 packets), is counted in
//! [`BweStats::unknown_seqs`]; a seq reported twice is counted once. Arithmetic saturates, rates
//! only come out of spans checked to be positive, and every estimate is clamped.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use router_engine::bwe::{BandwidthEstimator, BweConfig};
//! let t0 = Instant::now();
//! let mut bwe = BandwidthEstimator::new(t0, BweConfig::default());
//! assert_eq!(bwe.estimate_bps(), 1_000_000);
//! bwe.set_desired_bps(t0, 3_000_000);
//! let mut seq = 0u16;
//! for tick in 0..20u64 {
//!     let now = t0 + Duration::from_millis(10 * tick);
//!     let pad = bwe.poll_probe_bytes(now); // > 0 while the first probe runs
//!     bwe.on_packet_sent(now, seq, 1200, false);
//!     seq = seq.wrapping_add(1);
//!     if pad > 0 {
//!         bwe.on_packet_sent(now, seq, pad, true);
//!         seq = seq.wrapping_add(1);
//!     }
//! }
//! assert_eq!(bwe.stats().probes_started, 1);
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::rtcp::TwccFeedback;

mod delay;
mod history;
mod loss;
mod probe;

use delay::{DelayBased, GroupDelta, InterArrival, Trendline};
use history::{AckedRate, Lookup, SentHistory, SentPacket, Status};
use loss::LossBased;
use probe::Cluster;

/// Sent packets kept for matching feedback. Feedback normally comes within an RTT plus 50 ms;
/// 2 s leaves room for slow paths without keeping much.
const HISTORY_AGE_US: i64 = 2_000_000;
/// Hard bound on the history: 16384 × 16 bytes, reached only above ~8000 packets/s.
const HISTORY_MAX_PACKETS: usize = 16_384;
/// One transport-cc reference time unit.
const REFERENCE_US: i64 = 64_000;

/// Growth per second far from the known capacity (delay-based) or under 2 % loss (loss-based).
const GROWTH_PER_S: f64 = 1.08;
/// Growth stops at `ACKED_CAP_FACTOR × acknowledged + ACKED_CAP_BPS`.
const ACKED_CAP_FACTOR: f64 = 1.5;
const ACKED_CAP_BPS: f64 = 10_000.0;
const DEFAULT_RTT: Duration = Duration::from_millis(100);

const REMB_FALLBACK_AFTER: Duration = Duration::from_secs(2);

const PROBE_DURATION: Duration = Duration::from_millis(150);
/// The engine polls every ~10 ms: each poll pays for the tick ahead.
const PROBE_LEAD: Duration = Duration::from_millis(10);
/// Never more padding in one poll than this much of the probe rate (a missed poll must not
/// turn into a burst).
const PROBE_MAX_BURST: Duration = Duration::from_millis(20);
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Feedback for a cluster that has not come this long after it ended will not come.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Bounds and starting point of one estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BweConfig {
    pub initial_bps: u64,
    pub min_bps: u64,
    pub max_bps: u64,
}

impl Default for BweConfig {
    fn default() -> Self {
        BweConfig { initial_bps: 1_000_000, min_bps: 100_000, max_bps: 10_000_000 }
    }
}

/// What the delay detector last concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BandwidthUsage {
    #[default]
    Normal,
    /// The bottleneck queue grows: sending faster than the path carries.
    Overusing,
    /// The bottleneck queue drains.
    Underusing,
}

/// Counters and current values, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BweStats {
    pub estimate_bps: u64,
    pub delay_based_bps: u64,
    pub loss_based_bps: u64,
    /// What the feedback says arrived, over the last 500 ms of arrivals.
    pub acked_bps: Option<u64>,
    /// Loss fraction of the last loss window that had enough packets to judge.
    pub loss_fraction: f64,
    pub rtt: Option<Duration>,
    /// Transport-cc feedback packets handled.
    pub feedbacks: u64,
    /// Reported sequence numbers we never sent or no longer remember.
    pub unknown_seqs: u64,
    /// Reported sequence numbers that an earlier feedback already reported.
    pub duplicate_seqs: u64,
    /// Packets of ours that feedback reported (received or lost), each counted once.
    pub packets_reported: u64,
    pub packets_lost: u64,
    pub rembs: u64,
    pub probes_started: u64,
    pub probes_succeeded: u64,
    pub probe_bytes_sent: u64,
    pub overuse_events: u64,
    pub state: BandwidthUsage,
    /// REMB drives the estimate (no transport-cc feedback for 2 s).
    pub remb_fallback: bool,
}

/// Send-side bandwidth estimator of one subscriber transport. See the module docs.
#[derive(Debug)]
pub struct BandwidthEstimator {
    config: BweConfig,
    epoch: Instant,
    history: SentHistory,
    /// Unwrapped reference time (64 ms units) of the previous feedback.
    last_reference: Option<i64>,
    inter_arrival: InterArrival,
    trendline: Trendline,
    acked: AckedRate,
    delay: DelayBased,
    loss: LossBased,
    rtt: Option<Duration>,
    desired_bps: u64,
    last_twcc: Option<Instant>,
    remb_mode: bool,
    last_overuse: Option<Instant>,
    cluster: Option<Cluster>,
    next_cluster_id: u16,
    last_probe_start: Option<Instant>,
    probe_backoff: Duration,
    stats: BweStats,
}

impl BandwidthEstimator {
    pub fn new(now: Instant, config: BweConfig) -> Self {
        // A misconfigured range must not make every clamp below panic or invert.
        let max_bps = config.max_bps.max(config.min_bps).max(1);
        let config = BweConfig { max_bps, initial_bps: config.initial_bps.max(config.min_bps).min(max_bps), ..config };
        let initial = config.initial_bps as f64;
        BandwidthEstimator {
            config,
            epoch: now,
            history: SentHistory::default(),
            last_reference: None,
            inter_arrival: InterArrival::default(),
            trendline: Trendline::new(),
            acked: AckedRate::default(),
            delay: DelayBased {
                bps: initial,
                increasing: true,
                last_update: None,
                last_decrease: None,
                capacity_bps: None,
            },
            loss: LossBased {
                bps: initial,
                window: VecDeque::new(),
                last_update: None,
                last_decrease: None,
                last_fraction: 0.0,
            },
            rtt: None,
            desired_bps: 0,
            last_twcc: None,
            remb_mode: false,
            last_overuse: None,
            cluster: None,
            next_cluster_id: 1,
            last_probe_start: None,
            probe_backoff: PROBE_INTERVAL,
            stats: BweStats::default(),
        }
    }

    /// A packet carrying `twcc_seq` went out, `size` bytes on the wire (headers included);
    /// `is_probe` for padding sent because [`Self::poll_probe_bytes`] asked for it.
    pub fn on_packet_sent(&mut self, now: Instant, twcc_seq: u16, size: usize, is_probe: bool) {
        let send_us = self.micros(now);
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        if is_probe {
            self.stats.probe_bytes_sent += u64::from(size);
        }
        self.end_cluster_if_due(now);
        let cluster = match &self.cluster {
            Some(c) if c.ended.is_none() => c.id,
            _ => 0,
        };
        let packet = SentPacket { send_us, size, cluster, status: Status::Sent };
        let seq = self.history.insert(twcc_seq, packet, send_us - HISTORY_AGE_US);
        if cluster != 0
            && let Some(c) = self.cluster.as_mut()
        {
            c.on_sent(send_us, seq, size);
        }
    }

    /// A transport-cc feedback packet from the subscriber.
    pub fn handle_twcc_feedback(&mut self, now: Instant, fb: &TwccFeedback<'_>) {
        self.stats.feedbacks += 1;
        self.last_twcc = Some(now);
        self.remb_mode = false;
        let reference = self.unwrap_reference(fb.reference_time);
        let mut arrival_us = reference.saturating_mul(REFERENCE_US);
        let (mut reported, mut lost) = (0u32, 0u32);
        let mut newest_send_us: Option<i64> = None;
        let mut max_reported: Option<i64> = None;
        let mut overuse = false;
        let cluster_id = self.cluster.as_ref().map_or(0, |c| c.id);
        for (seq, delta) in fb.packets() {
            // Deltas chain through every received packet, known to us or not.
            if let Some(d) = delta {
                arrival_us = arrival_us.saturating_add(d);
            }
            let (packet, s) = match self.history.report(seq) {
                Lookup::Fresh(p, s) => (p, s),
                Lookup::Duplicate => {
                    self.stats.duplicate_seqs += 1;
                    continue;
                }
                Lookup::Unknown => {
                    self.stats.unknown_seqs += 1;
                    continue;
                }
            };
            reported += 1;
            max_reported = Some(max_reported.map_or(s, |m| m.max(s)));
            if delta.is_none() {
                lost += 1;
                continue;
            }
            newest_send_us = Some(newest_send_us.map_or(packet.send_us, |n| n.max(packet.send_us)));
            self.acked.push(arrival_us, packet.size);
            if packet.cluster != 0
                && packet.cluster == cluster_id
                && let Some(c) = self.cluster.as_mut()
            {
                c.on_received(arrival_us, packet.size);
            }
            match self.inter_arrival.add(packet.send_us, arrival_us) {
                GroupDelta::None => {}
                GroupDelta::Reset => self.trendline.reset(),
                GroupDelta::Delta { send_delta_us, arrival_delta_us, arrival_at_us } => {
                    let (send_ms, arrival_ms) = (send_delta_us as f64 / 1e3, arrival_delta_us as f64 / 1e3);
                    overuse |= self.trendline.update(send_ms, arrival_ms, arrival_at_us as f64 / 1e3);
                }
            }
        }

        if let Some(sent_us) = newest_send_us {
            let sample_us = u64::try_from(self.micros(now) - sent_us).unwrap_or(0);
            let sample = Duration::from_micros(sample_us).min(Duration::from_secs(10));
            self.rtt = Some(self.rtt.map_or(sample, |r| (r * 7 + sample) / 8));
        }
        let rtt = self.rtt.unwrap_or(DEFAULT_RTT);
        let acked = self.acked.bps();
        let usage = if overuse { BandwidthUsage::Overusing } else { self.trendline.state };
        if overuse {
            self.stats.overuse_events += 1;
            self.last_overuse = Some(now);
            if let Some(c) = self.cluster.as_mut()
                && c.ended.is_none()
            {
                // The probe is building a queue: stop adding to it.
                c.ended = Some(now);
                c.aborted = true;
            }
        }
        self.stats.packets_reported += u64::from(reported);
        self.stats.packets_lost += u64::from(lost);
        self.delay.update(now, usage, acked, rtt);
        let current = self.delay.bps.min(self.loss.bps);
        self.loss.update(now, reported, lost, current, acked);

        let covered = match (&self.cluster, max_reported) {
            (Some(c), Some(m)) => c.ended.is_some() && c.last_seq.is_some_and(|last| m >= last),
            _ => false,
        };
        if covered && let Some(c) = self.cluster.take() {
            match c.result_bps() {
                Some(bps) if !overuse && !c.aborted => self.probe_succeeded(bps),
                _ => self.probe_failed(),
            }
        }
        self.clamp_estimates();
    }

    /// A REMB from the subscriber: the estimate while no transport-cc feedback arrives.
    pub fn handle_remb(&mut self, now: Instant, bitrate_bps: u64) {
        self.stats.rembs += 1;
        if self.last_twcc.is_some_and(|t| now.saturating_duration_since(t) < REMB_FALLBACK_AFTER) {
            return;
        }
        let bps = bitrate_bps as f64;
        self.remb_mode = true;
        self.delay.bps = bps;
        self.delay.capacity_bps = None;
        self.delay.increasing = false;
        self.loss.bps = bps;
        self.cluster = None;
        self.clamp_estimates();
    }

    /// The rate the allocator may spend on this transport.
    pub fn estimate_bps(&self) -> u64 {
        self.estimate() as u64
    }

    /// What the allocator would like to send (sum of the best layers the subscriber wants).
    /// Probing only happens when desired > estimate.
    pub fn set_desired_bps(&mut self, now: Instant, desired_bps: u64) {
        self.desired_bps = desired_bps;
        let estimate = self.estimate();
        if let Some(c) = self.cluster.as_mut()
            && c.ended.is_none()
            && desired_bps as f64 <= estimate
        {
            c.ended = Some(now); // nothing left to find out
        }
    }

    /// Bytes of probe padding to send now. Call every ~10 ms; send that many bytes as padding
    /// packets and report each with [`Self::on_packet_sent`] (`is_probe = true`).
    pub fn poll_probe_bytes(&mut self, now: Instant) -> usize {
        self.end_cluster_if_due(now);
        if let Some(c) = &self.cluster
            && let Some(ended) = c.ended
        {
            // Waiting for feedback: give up when it does not come, or there was nothing sent.
            if c.sent_packets == 0 || now.saturating_duration_since(ended) > PROBE_TIMEOUT {
                self.cluster = None;
                self.probe_failed();
            }
        }
        if self.cluster.is_none() {
            self.maybe_start_probe(now);
        }
        let Some(c) = self.cluster.as_ref().filter(|c| c.ended.is_none()) else { return 0 };
        let elapsed = (now.saturating_duration_since(c.start) + PROBE_LEAD).as_secs_f64();
        let due = c.target_bps * elapsed / 8.0 - c.sent_bytes as f64;
        due.max(0.0).min(c.target_bps * PROBE_MAX_BURST.as_secs_f64() / 8.0) as usize
    }

    pub fn stats(&self) -> BweStats {
        BweStats {
            estimate_bps: self.estimate_bps(),
            delay_based_bps: self.delay.bps as u64,
            loss_based_bps: self.loss.bps as u64,
            acked_bps: self.acked.bps().map(|b| b as u64),
            loss_fraction: self.loss.last_fraction,
            rtt: self.rtt,
            state: self.trendline.state,
            remb_fallback: self.remb_mode,
            ..self.stats
        }
    }

    fn estimate(&self) -> f64 {
        self.delay.bps.min(self.loss.bps).max(self.config.min_bps as f64).min(self.config.max_bps as f64)
    }

    fn clamp_estimates(&mut self) {
        let (lo, hi) = (self.config.min_bps as f64, self.config.max_bps as f64);
        self.delay.bps = self.delay.bps.max(lo).min(hi);
        self.loss.bps = self.loss.bps.max(lo).min(hi);
    }

    fn micros(&self, now: Instant) -> i64 {
        i64::try_from(now.saturating_duration_since(self.epoch).as_micros()).unwrap_or(i64::MAX)
    }

    /// Unwraps the 24-bit reference time against the previous feedback's.
    fn unwrap_reference(&mut self, reference: u32) -> i64 {
        let r = i64::from(reference & 0x00ff_ffff);
        let unwrapped = match self.last_reference {
            None => r,
            Some(prev) => {
                // Signed 24-bit difference: feedback may come out of order.
                let d = (r - prev).rem_euclid(1 << 24);
                prev.saturating_add(if d >= 1 << 23 { d - (1 << 24) } else { d })
            }
        };
        self.last_reference = Some(unwrapped);
        unwrapped
    }
}

#[cfg(test)]
// A test that unwraps fails loudly on the input it was given, which is what a test should do.
#[allow(clippy::unwrap_used)]
mod tests;
