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

use crate::twcc::TwccFeedback;

/// Sent packets kept for matching feedback. Feedback normally comes within an RTT plus 50 ms;
/// 2 s leaves room for slow paths without keeping much.
const HISTORY_AGE_US: i64 = 2_000_000;
/// Hard bound on the history: 16384 × 16 bytes, reached only above ~8000 packets/s.
const HISTORY_MAX_PACKETS: usize = 16_384;
/// One transport-cc reference time unit.
const REFERENCE_US: i64 = 64_000;

/// Packets sent within this of a group's first packet belong to it (one pacer burst).
const GROUP_US: i64 = 5_000;
/// A packet arriving this soon after the group's last one, with a negative propagation delta,
/// arrived in a burst from a draining queue and joins the group.
const BURST_ARRIVAL_US: i64 = 5_000;
/// ... as long as the group does not get longer than this.
const MAX_BURST_US: i64 = 100_000;
/// Groups further apart than this (a pause in sending, a clock jump) restart the detector.
const GROUP_RESET_US: i64 = 3_000_000;

const TRENDLINE_WINDOW: usize = 20;
const TRENDLINE_SMOOTHING: f64 = 0.9;
const TRENDLINE_GAIN: f64 = 4.0;
const TRENDLINE_MAX_DELTAS: f64 = 60.0;
const THRESHOLD_INITIAL_MS: f64 = 12.5;
const THRESHOLD_MIN_MS: f64 = 6.0;
const THRESHOLD_MAX_MS: f64 = 600.0;
const THRESHOLD_K_UP: f64 = 0.0087;
const THRESHOLD_K_DOWN: f64 = 0.039;
/// A trend this far past the threshold is a spike; the threshold does not chase it.
const THRESHOLD_MAX_JUMP_MS: f64 = 15.0;
const OVERUSE_TIME_MS: f64 = 10.0;

/// Multiplicative decrease on overuse, applied to the acknowledged rate.
const BETA: f64 = 0.85;
/// Growth per second far from the known capacity (delay-based) or under 2 % loss (loss-based).
const GROWTH_PER_S: f64 = 1.08;
/// The additive increase stops at this share of the remembered link capacity.
const CAPACITY_HEADROOM: f64 = 0.95;
/// Below this share of the remembered capacity the increase is multiplicative again.
const CAPACITY_FAR: f64 = 0.5;
/// The acknowledged rate this far above the remembered capacity means the link got faster.
const CAPACITY_RESET: f64 = 1.25;
/// A capacity sample this far (relative) from the remembered one replaces it instead of
/// being averaged in.
const CAPACITY_JUMP: f64 = 0.3;
const CAPACITY_EWMA: f64 = 0.2;
/// Growth stops at `ACKED_CAP_FACTOR × acknowledged + ACKED_CAP_BPS`.
const ACKED_CAP_FACTOR: f64 = 1.5;
const ACKED_CAP_BPS: f64 = 10_000.0;
const MIN_ADDITIVE_BPS_PER_S: f64 = 4_000.0;
const DEFAULT_RTT: Duration = Duration::from_millis(100);
const MIN_DECREASE_INTERVAL: Duration = Duration::from_millis(10);
const MAX_DECREASE_INTERVAL: Duration = Duration::from_millis(200);

/// Acknowledged rate window, in arrival time.
const ACKED_WINDOW_US: i64 = 500_000;
/// No acknowledged rate from a shorter span: a handful of packets says little.
const ACKED_MIN_SPAN_US: i64 = 100_000;
/// An arrival this far before the newest one is a clock jump, not reordering.
const ACKED_RESET_US: i64 = 10_000_000;

const LOSS_WINDOW: Duration = Duration::from_secs(1);
const LOSS_MIN_PACKETS: u32 = 20;
const LOSS_LOW: f64 = 0.02;
const LOSS_HIGH: f64 = 0.10;

const REMB_FALLBACK_AFTER: Duration = Duration::from_secs(2);

const PROBE_RATE_FACTOR: f64 = 2.0;
const PROBE_DESIRED_FACTOR: f64 = 1.2;
/// A probe that would not reach this multiple of the estimate is not worth the padding.
const PROBE_MIN_GAIN: f64 = 1.1;
const PROBE_DURATION: Duration = Duration::from_millis(150);
const PROBE_MAX_DURATION: Duration = Duration::from_millis(500);
/// A cluster lasts long enough to carry this many bytes (ten 1200-byte packets).
const PROBE_MIN_BYTES: f64 = 12_000.0;
/// The engine polls every ~10 ms: each poll pays for the tick ahead.
const PROBE_LEAD: Duration = Duration::from_millis(10);
/// Never more padding in one poll than this much of the probe rate (a missed poll must not
/// turn into a burst).
const PROBE_MAX_BURST: Duration = Duration::from_millis(20);
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
const PROBE_MAX_BACKOFF: Duration = Duration::from_secs(4);
const PROBE_QUIET_AFTER_OVERUSE: Duration = Duration::from_secs(1);
/// Feedback for a cluster that has not come this long after it ended will not come.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const PROBE_MIN_PACKETS: u32 = 5;
const PROBE_MIN_DELIVERED: f64 = 0.8;
const PROBE_SUCCESS_RATIO: f64 = 0.9;
const PROBE_RESULT_FACTOR: f64 = 0.95;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// A gap in the sequence numbers we were told about.
    NotSent,
    Sent,
    Reported,
}

#[derive(Debug, Clone, Copy)]
struct SentPacket {
    /// Microseconds since the estimator was created.
    send_us: i64,
    size: u32,
    /// Probe cluster the packet was sent in; 0 for none.
    cluster: u16,
    status: Status,
}

enum Lookup {
    Unknown,
    Duplicate,
    Fresh(SentPacket, i64),
}

/// Sent packets by unwrapped sequence number, consecutive from `first`.
#[derive(Debug, Default)]
struct SentHistory {
    packets: VecDeque<SentPacket>,
    /// Unwrapped sequence number of `packets[0]`.
    first: i64,
    /// Highest unwrapped sequence number sent, kept when the history empties.
    highest: Option<i64>,
}

impl SentHistory {
    fn unwrap_seq(&self, seq: u16) -> Option<i64> {
        let h = self.highest?;
        Some(h + i64::from(seq.wrapping_sub(h as u16) as i16))
    }

    /// Records a sent packet; returns its unwrapped sequence number.
    fn insert(&mut self, seq: u16, packet: SentPacket, oldest_us: i64) -> i64 {
        let s = self.unwrap_seq(seq).unwrap_or(i64::from(seq));
        match self.highest {
            Some(h) if s <= h => {
                // A late report of an earlier seq: fill its gap if still kept.
                if let Some(slot) = usize::try_from(s - self.first).ok().and_then(|i| self.packets.get_mut(i))
                    && slot.status == Status::NotSent
                {
                    *slot = packet;
                }
                return s;
            }
            Some(h) if !self.packets.is_empty() && s - h <= HISTORY_MAX_PACKETS as i64 => {
                let gap = SentPacket { status: Status::NotSent, cluster: 0, size: 0, ..packet };
                for _ in h + 1..s {
                    self.packets.push_back(gap);
                }
            }
            _ => {
                self.packets.clear();
                self.first = s;
            }
        }
        self.packets.push_back(packet);
        self.highest = Some(s);
        while self.packets.len() > HISTORY_MAX_PACKETS || self.packets.front().is_some_and(|p| p.send_us < oldest_us) {
            self.packets.pop_front();
            self.first += 1;
        }
        s
    }

    fn report(&mut self, seq: u16) -> Lookup {
        let Some(s) = self.unwrap_seq(seq) else { return Lookup::Unknown };
        let Some(p) = usize::try_from(s - self.first).ok().and_then(|i| self.packets.get_mut(i)) else {
            return Lookup::Unknown;
        };
        match p.status {
            Status::NotSent => Lookup::Unknown,
            Status::Reported => Lookup::Duplicate,
            Status::Sent => {
                p.status = Status::Reported;
                Lookup::Fresh(*p, s)
            }
        }
    }
}

/// Bytes that arrived, over a window of arrival time.
#[derive(Debug, Default)]
struct AckedRate {
    window: VecDeque<(i64, u32)>,
    bytes: u64,
    latest_us: i64,
}

impl AckedRate {
    fn push(&mut self, arrival_us: i64, size: u32) {
        if !self.window.is_empty() {
            if arrival_us < self.latest_us - ACKED_RESET_US || arrival_us > self.latest_us + ACKED_RESET_US {
                self.window.clear();
                self.bytes = 0;
            } else if arrival_us < self.latest_us - ACKED_WINDOW_US {
                return; // too late to matter
            }
        }
        if self.window.is_empty() {
            self.latest_us = arrival_us;
        }
        self.window.push_back((arrival_us, size));
        self.bytes += u64::from(size);
        self.latest_us = self.latest_us.max(arrival_us);
        while let Some(&(at, s)) = self.window.front() {
            if at >= self.latest_us - ACKED_WINDOW_US {
                break;
            }
            self.window.pop_front();
            self.bytes -= u64::from(s);
        }
    }

    fn bps(&self) -> Option<f64> {
        let &(first_us, first_size) = self.window.front()?;
        let span = self.latest_us - first_us;
        if self.window.len() < 2 || span < ACKED_MIN_SPAN_US {
            return None;
        }
        // Without the first packet's bytes: they arrived before the span starts.
        Some((self.bytes - u64::from(first_size)) as f64 * 8e6 / span as f64)
    }
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first_send_us: i64,
    last_send_us: i64,
    last_arrival_us: i64,
}

/// Groups received packets into send bursts and yields `(send delta, arrival delta)` between
/// consecutive complete groups.
#[derive(Debug, Default)]
struct InterArrival {
    current: Option<Group>,
    previous: Option<Group>,
}

enum GroupDelta {
    None,
    Delta {
        send_delta_us: i64,
        arrival_delta_us: i64,
        arrival_at_us: i64,
    },
    /// A long pause or a clock jump: the detector's history no longer applies.
    Reset,
}

impl InterArrival {
    fn add(&mut self, send_us: i64, arrival_us: i64) -> GroupDelta {
        let fresh = Group { first_send_us: send_us, last_send_us: send_us, last_arrival_us: arrival_us };
        let Some(cur) = self.current.as_mut() else {
            self.current = Some(fresh);
            return GroupDelta::None;
        };
        if send_us < cur.first_send_us {
            return GroupDelta::None; // sent before the group we are building: too late to use
        }
        let arrival_delta = arrival_us - cur.last_arrival_us;
        let in_burst = (0..=BURST_ARRIVAL_US).contains(&arrival_delta)
            && arrival_delta - (send_us - cur.last_send_us) < 0
            && send_us - cur.first_send_us <= MAX_BURST_US;
        if send_us - cur.first_send_us <= GROUP_US || in_burst {
            cur.last_send_us = cur.last_send_us.max(send_us);
            cur.last_arrival_us = cur.last_arrival_us.max(arrival_us);
            return GroupDelta::None;
        }
        let done = *cur;
        self.current = Some(fresh);
        let Some(prev) = self.previous.replace(done) else { return GroupDelta::None };
        let send_delta = done.last_send_us - prev.last_send_us;
        let arrival_delta = done.last_arrival_us - prev.last_arrival_us;
        if arrival_delta.abs() > GROUP_RESET_US || send_delta > GROUP_RESET_US {
            self.previous = None;
            return GroupDelta::Reset;
        }
        if arrival_delta < 0 {
            return GroupDelta::None; // reordered across groups: no usable delta
        }
        GroupDelta::Delta {
            send_delta_us: send_delta,
            arrival_delta_us: arrival_delta,
            arrival_at_us: done.last_arrival_us,
        }
    }
}

/// Trendline over accumulated delay, with GCC's adaptive-threshold overuse detector.
#[derive(Debug)]
struct Trendline {
    deltas: u32,
    accumulated_ms: f64,
    smoothed_ms: f64,
    first_arrival_ms: Option<f64>,
    window: VecDeque<(f64, f64)>,
    trend: f64,
    prev_trend: f64,
    threshold_ms: f64,
    last_threshold_ms: Option<f64>,
    /// Time spent over the threshold; negative when not over it.
    overusing_ms: f64,
    overuse_hits: u32,
    state: BandwidthUsage,
}

impl Trendline {
    fn new() -> Self {
        Trendline {
            deltas: 0,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            first_arrival_ms: None,
            window: VecDeque::with_capacity(TRENDLINE_WINDOW + 1),
            trend: 0.0,
            prev_trend: 0.0,
            threshold_ms: THRESHOLD_INITIAL_MS,
            last_threshold_ms: None,
            overusing_ms: -1.0,
            overuse_hits: 0,
            state: BandwidthUsage::Normal,
        }
    }

    /// Forgets the delay history (after a pause) but keeps the learned threshold.
    fn reset(&mut self) {
        *self = Trendline { threshold_ms: self.threshold_ms, last_threshold_ms: None, ..Trendline::new() };
    }

    /// Returns true when this update detected overuse.
    fn update(&mut self, send_delta_ms: f64, arrival_delta_ms: f64, arrival_ms: f64) -> bool {
        self.deltas = (self.deltas + 1).min(1000);
        self.accumulated_ms += arrival_delta_ms - send_delta_ms;
        self.smoothed_ms = TRENDLINE_SMOOTHING * self.smoothed_ms + (1.0 - TRENDLINE_SMOOTHING) * self.accumulated_ms;
        let first = *self.first_arrival_ms.get_or_insert(arrival_ms);
        self.window.push_back((arrival_ms - first, self.smoothed_ms));
        if self.window.len() > TRENDLINE_WINDOW {
            self.window.pop_front();
        }
        if self.window.len() == TRENDLINE_WINDOW
            && let Some(slope) = slope(&self.window)
        {
            self.trend = slope;
        }
        self.detect(send_delta_ms, arrival_ms)
    }

    fn detect(&mut self, send_delta_ms: f64, now_ms: f64) -> bool {
        if self.deltas < 2 {
            return false;
        }
        let modified = f64::from(self.deltas).min(TRENDLINE_MAX_DELTAS) * self.trend * TRENDLINE_GAIN;
        let mut detected = false;
        if modified > self.threshold_ms {
            if self.overusing_ms < 0.0 {
                // Assume the overuse started halfway through the last interval.
                self.overusing_ms = send_delta_ms / 2.0;
            } else {
                self.overusing_ms += send_delta_ms;
            }
            self.overuse_hits += 1;
            if self.overusing_ms > OVERUSE_TIME_MS && self.overuse_hits > 1 && self.trend >= self.prev_trend {
                self.overusing_ms = 0.0;
                self.overuse_hits = 0;
                self.state = BandwidthUsage::Overusing;
                detected = true;
            }
        } else if modified < -self.threshold_ms {
            self.overusing_ms = -1.0;
            self.overuse_hits = 0;
            self.state = BandwidthUsage::Underusing;
        } else {
            self.overusing_ms = -1.0;
            self.overuse_hits = 0;
            self.state = BandwidthUsage::Normal;
        }
        self.prev_trend = self.trend;
        self.adapt_threshold(modified, now_ms);
        detected
    }

    fn adapt_threshold(&mut self, modified: f64, now_ms: f64) {
        let last = *self.last_threshold_ms.get_or_insert(now_ms);
        self.last_threshold_ms = Some(now_ms);
        if modified.abs() > self.threshold_ms + THRESHOLD_MAX_JUMP_MS {
            return;
        }
        let k = if modified.abs() < self.threshold_ms { THRESHOLD_K_DOWN } else { THRESHOLD_K_UP };
        // Constant bounds with min < max: `clamp` cannot panic.
        let dt = (now_ms - last).clamp(0.0, 100.0);
        self.threshold_ms += k * (modified.abs() - self.threshold_ms) * dt;
        self.threshold_ms = self.threshold_ms.clamp(THRESHOLD_MIN_MS, THRESHOLD_MAX_MS);
    }
}

/// Least-squares slope of `(x, y)` points; `None` when all x are equal.
fn slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) =
        points.iter().fold((0.0, 0.0), |(a, b), &(x, y)| (a + (x - mx) * (y - my), b + (x - mx) * (x - mx)));
    (den > f64::EPSILON).then(|| num / den)
}

/// AIMD on the delay detector's signal.
#[derive(Debug)]
struct DelayBased {
    bps: f64,
    /// False after a decrease or on underuse, until the detector says normal again.
    increasing: bool,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
    /// Acknowledged rate at recent overuses.
    capacity_bps: Option<f64>,
}

impl DelayBased {
    fn update(&mut self, now: Instant, usage: BandwidthUsage, acked: Option<f64>, rtt: Duration) {
        match usage {
            BandwidthUsage::Overusing => self.decrease(now, acked, rtt),
            BandwidthUsage::Underusing => self.increasing = false,
            BandwidthUsage::Normal if !self.increasing => self.increasing = true,
            BandwidthUsage::Normal => self.increase(now, acked, rtt),
        }
        self.last_update = Some(now);
    }

    fn decrease(&mut self, now: Instant, acked: Option<f64>, rtt: Duration) {
        let interval = rtt.max(MIN_DECREASE_INTERVAL).min(MAX_DECREASE_INTERVAL);
        let due = self.last_decrease.is_none_or(|t| now.saturating_duration_since(t) >= interval)
            || acked.is_some_and(|a| a < self.bps / 2.0);
        if !due {
            return;
        }
        if let Some(a) = acked {
            self.capacity_bps = Some(match self.capacity_bps {
                Some(c) if (a - c).abs() <= CAPACITY_JUMP * c => (1.0 - CAPACITY_EWMA) * c + CAPACITY_EWMA * a,
                _ => a,
            });
        }
        self.bps = self.bps.min(BETA * acked.unwrap_or(self.bps));
        self.increasing = false;
        self.last_decrease = Some(now);
    }

    fn increase(&mut self, now: Instant, acked: Option<f64>, rtt: Duration) {
        let dt = self
            .last_update
            .map_or(0.0, |t| now.saturating_duration_since(t).min(Duration::from_secs(1)).as_secs_f64());
        if let (Some(c), Some(a)) = (self.capacity_bps, acked)
            && a > CAPACITY_RESET * c
        {
            self.capacity_bps = None;
        }
        let mut next = match self.capacity_bps {
            Some(c) if self.bps >= CAPACITY_FAR * c => {
                let cap = (CAPACITY_HEADROOM * c).max(self.bps);
                (self.bps + additive_bps_per_s(self.bps, rtt) * dt).min(cap)
            }
            _ => self.bps * GROWTH_PER_S.powf(dt),
        };
        if let Some(a) = acked {
            next = next.min((ACKED_CAP_FACTOR * a + ACKED_CAP_BPS).max(self.bps));
        }
        self.bps = next;
    }
}

/// About one packet per response time: the packet size of a 30 fps stream at this rate
/// (frames split into 1200-byte packets), over RTT + 100 ms.
fn additive_bps_per_s(bps: f64, rtt: Duration) -> f64 {
    let response_s = (rtt + Duration::from_millis(100)).as_secs_f64();
    let bits_per_frame = bps / 30.0;
    let packets_per_frame = (bits_per_frame / (1200.0 * 8.0)).ceil().max(1.0);
    (bits_per_frame / packets_per_frame / response_s).max(MIN_ADDITIVE_BPS_PER_S)
}

#[derive(Debug)]
struct LossBased {
    bps: f64,
    /// `(feedback time, reported, lost)` per feedback.
    window: VecDeque<(Instant, u32, u32)>,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
    last_fraction: f64,
}

impl LossBased {
    fn update(&mut self, now: Instant, reported: u32, lost: u32, current: f64, acked: Option<f64>) {
        if reported > 0 {
            self.window.push_back((now, reported, lost));
        }
        while self.window.front().is_some_and(|&(t, _, _)| now.saturating_duration_since(t) > LOSS_WINDOW) {
            self.window.pop_front();
        }
        let (reported, lost) =
            self.window.iter().fold((0u32, 0u32), |(r, l), &(_, a, b)| (r.saturating_add(a), l.saturating_add(b)));
        if reported < LOSS_MIN_PACKETS {
            return;
        }
        let fraction = f64::from(lost) / f64::from(reported);
        self.last_fraction = fraction;
        let dt = self
            .last_update
            .map_or(0.0, |t| now.saturating_duration_since(t).min(Duration::from_secs(1)).as_secs_f64());
        self.last_update = Some(now);
        if fraction < LOSS_LOW {
            self.bps *= GROWTH_PER_S.powf(dt);
        } else if fraction > LOSS_HIGH
            && self.last_decrease.is_none_or(|t| now.saturating_duration_since(t) >= LOSS_WINDOW)
        {
            let base = self.bps.min(current).min(acked.unwrap_or(f64::INFINITY));
            self.bps = base * (1.0 - 0.5 * fraction);
            self.last_decrease = Some(now);
            self.window.clear();
        }
    }
}

#[derive(Debug)]
struct Cluster {
    id: u16,
    start: Instant,
    duration: Duration,
    target_bps: f64,
    /// Set when the cluster stops sending.
    ended: Option<Instant>,
    /// Stopped early because the delay detector saw the queue it built: failed.
    aborted: bool,
    sent_bytes: u64,
    sent_packets: u32,
    first_send_us: i64,
    last_send_us: i64,
    last_size: u32,
    last_seq: Option<i64>,
    recv_bytes: u64,
    recv_packets: u32,
    first_arrival_us: i64,
    first_arrival_size: u32,
    last_arrival_us: i64,
}

impl Cluster {
    fn on_sent(&mut self, send_us: i64, seq: i64, size: u32) {
        if self.sent_packets == 0 {
            self.first_send_us = send_us;
        }
        self.sent_packets += 1;
        self.sent_bytes += u64::from(size);
        self.last_send_us = send_us;
        self.last_size = size;
        self.last_seq = Some(self.last_seq.map_or(seq, |s| s.max(seq)));
    }

    fn on_received(&mut self, arrival_us: i64, size: u32) {
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
    fn result_bps(&self) -> Option<f64> {
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

    fn end_cluster_if_due(&mut self, now: Instant) {
        if let Some(c) = self.cluster.as_mut()
            && c.ended.is_none()
            && now.saturating_duration_since(c.start) >= c.duration
        {
            c.ended = Some(now);
        }
    }

    fn maybe_start_probe(&mut self, now: Instant) {
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
        self.cluster = Some(Cluster {
            id,
            start: now,
            duration,
            target_bps: target,
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
        });
        self.last_probe_start = Some(now);
        self.stats.probes_started += 1;
    }

    fn probe_succeeded(&mut self, bps: f64) {
        self.stats.probes_succeeded += 1;
        self.probe_backoff = PROBE_INTERVAL;
        if bps > self.delay.bps {
            self.delay.bps = bps;
            // The remembered capacity was wrong or is stale: the path just carried more.
            self.delay.capacity_bps = None;
        }
        self.loss.bps = self.loss.bps.max(bps);
    }

    fn probe_failed(&mut self) {
        self.probe_backoff = (self.probe_backoff * 2).min(PROBE_MAX_BACKOFF);
    }
}

#[cfg(test)]
// A test that unwraps fails loudly on the input it was given, which is what a test should do.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rtcp::{self, RtcpPacket};
    use crate::twcc::TwccReceiver;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    /// splitmix64: tiny, seeded, plenty for loss decisions and fuzz bytes.
    struct Prng(u64);

    impl Prng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn chance(&mut self, p: f64) -> bool {
            ((self.next_u64() >> 11) as f64) / ((1u64 << 53) as f64) < p
        }
    }

    /// A bottleneck: random loss, then a FIFO drained at `rate_bps` that drops a packet which
    /// would wait longer than `queue_limit` (drop-tail), then `delay` of propagation.
    struct Link {
        rate_bps: u64,
        queue_limit: Duration,
        delay: Duration,
        loss: f64,
        free_at: Instant,
        in_flight: VecDeque<(Instant, u16)>,
        tail_drops: u64,
        random_drops: u64,
    }

    impl Link {
        fn send(&mut self, now: Instant, seq: u16, size: usize, rng: &mut Prng) {
            if self.loss > 0.0 && rng.chance(self.loss) {
                self.random_drops += 1;
                return;
            }
            let start = self.free_at.max(now);
            if start - now > self.queue_limit {
                self.tail_drops += 1;
                return;
            }
            self.free_at = start + Duration::from_nanos(size as u64 * 8 * 1_000_000_000 / self.rate_bps);
            self.in_flight.push_back((self.free_at + self.delay, seq));
        }
    }

    const MEDIA_PACKET: usize = 1200;
    /// Smallest padding packet the sender bothers with (an RTP header and a bit).
    const MIN_PADDING: usize = 50;

    /// A sender (media at min(estimate, application rate) in 1200-byte packets, plus the probe
    /// padding polled every 10 ms), the link, and a receiver answering with real transport-cc
    /// feedback every 50 ms over a 20 ms return path. Virtual time in 1 ms steps.
    struct Sim {
        t0: Instant,
        now: Instant,
        bwe: BandwidthEstimator,
        link: Link,
        rx: TwccReceiver,
        rng: Prng,
        back: VecDeque<(Instant, Vec<u8>)>,
        seq: u16,
        credit: f64,
        app_bps: u64,
        /// Largest padding packet: 1200 for RTX-style probes, ~270 for padding-only RTP.
        padding_packet: usize,
        /// Estimate every 10 ms, by time since start.
        trace: Vec<(Duration, u64)>,
    }

    impl Sim {
        fn new(seed: u64, config: BweConfig, link_bps: u64, loss: f64, app_bps: u64) -> Self {
            let t0 = Instant::now();
            Sim {
                t0,
                now: t0,
                bwe: BandwidthEstimator::new(t0, config),
                link: Link {
                    rate_bps: link_bps,
                    queue_limit: ms(150),
                    delay: ms(20),
                    loss,
                    free_at: t0,
                    in_flight: VecDeque::new(),
                    tail_drops: 0,
                    random_drops: 0,
                },
                rx: TwccReceiver::new(),
                rng: Prng(seed),
                back: VecDeque::new(),
                // Wraps within the first second, and again every minute or so.
                seq: 65_000,
                credit: 0.0,
                app_bps,
                padding_packet: MEDIA_PACKET,
                trace: Vec::new(),
            }
        }

        fn send(&mut self, size: usize, probe: bool) {
            self.bwe.on_packet_sent(self.now, self.seq, size, probe);
            self.link.send(self.now, self.seq, size, &mut self.rng);
            self.seq = self.seq.wrapping_add(1);
        }

        fn step(&mut self) {
            self.now += ms(1);
            let now = self.now;
            while let Some(&(at, seq)) = self.link.in_flight.front()
                && at <= now
            {
                self.link.in_flight.pop_front();
                self.rx.record(seq, at);
            }
            let mut buf = [0u8; 1200];
            while let Some(n) = self.rx.poll_feedback(now, 1, 2, &mut buf) {
                self.back.push_back((now + self.link.delay, buf[..n].to_vec()));
            }
            while let Some((at, _)) = self.back.front()
                && *at <= now
            {
                let (_, bytes) = self.back.pop_front().unwrap();
                for p in rtcp::packets(&bytes) {
                    match p {
                        Ok(RtcpPacket::TransportCc(fb)) => self.bwe.handle_twcc_feedback(now, &fb),
                        other => panic!("not transport-cc feedback: {other:?}"),
                    }
                }
            }
            if (now - self.t0).as_millis().is_multiple_of(10) {
                self.bwe.set_desired_bps(now, self.app_bps);
                let mut pad = self.bwe.poll_probe_bytes(now);
                while pad >= MIN_PADDING {
                    let size = pad.min(self.padding_packet);
                    self.send(size, true);
                    pad -= size;
                }
                self.trace.push((now - self.t0, self.bwe.estimate_bps()));
            }
            let rate = self.bwe.estimate_bps().min(self.app_bps) as f64;
            self.credit += rate / 8.0 / 1000.0;
            while self.credit >= MEDIA_PACKET as f64 {
                self.send(MEDIA_PACKET, false);
                self.credit -= MEDIA_PACKET as f64;
            }
        }

        fn run_for(&mut self, d: Duration) {
            let end = self.now + d;
            while self.now < end {
                self.step();
            }
        }

        /// Trace samples from `from` on (time since start).
        fn since(&self, from: Duration) -> impl Iterator<Item = (Duration, u64)> + '_ {
            self.trace.iter().copied().filter(move |&(t, _)| t >= from)
        }

        /// First time from `from` on after which every sample satisfies `ok`.
        fn settled_at(&self, from: Duration, ok: impl Fn(u64) -> bool) -> Option<Duration> {
            let samples: Vec<_> = self.since(from).collect();
            let last_bad = samples.iter().rposition(|&(_, e)| !ok(e));
            match last_bad {
                None => samples.first().map(|s| s.0),
                Some(i) => samples.get(i + 1).map(|s| s.0),
            }
        }

        fn summary(&self, name: &str) {
            let s = self.bwe.stats();
            eprintln!(
                "{name}: t={:.1}s estimate={} delay={} loss={} acked={:?} loss_frac={:.3} rtt={:?} \
                 feedbacks={} unknown={} probes={}/{} overuses={} tail_drops={} random_drops={}",
                secs(self.now - self.t0),
                s.estimate_bps,
                s.delay_based_bps,
                s.loss_based_bps,
                s.acked_bps,
                s.loss_fraction,
                s.rtt,
                s.feedbacks,
                s.unknown_seqs,
                s.probes_succeeded,
                s.probes_started,
                s.overuse_events,
                self.link.tail_drops,
                self.link.random_drops,
            );
        }
    }

    /// 20 s behind a 400 kbit/s bottleneck, wanting 3 Mbit/s, starting at 1 Mbit/s.
    fn behind_400k_bottleneck() -> Sim {
        let mut sim = Sim::new(1, BweConfig::default(), 400_000, 0.0, 3_000_000);
        sim.run_for(Duration::from_secs(20));
        sim
    }

    #[test]
    fn settles_under_a_400k_bottleneck() {
        let sim = behind_400k_bottleneck();
        sim.summary("400k");
        let settled = sim.settled_at(Duration::ZERO, |e| (200_000..=400_000).contains(&e)).unwrap();
        eprintln!("400k: within [200k, 400k] from {:.2}s on", secs(settled));
        assert!(settled <= Duration::from_secs(5), "settled only at {settled:?}");
        // Not by giving up: the estimate uses most of the link once settled.
        let late: Vec<u64> = sim.since(Duration::from_secs(10)).map(|(_, e)| e).collect();
        let mean = late.iter().sum::<u64>() / late.len() as u64;
        eprintln!("400k: mean estimate over 10-20 s {mean}");
        assert!(mean >= 300_000, "mean {mean}");
        let s = sim.bwe.stats();
        assert!(s.overuse_events >= 1, "the delay detector saw the queue");
        assert!(s.probes_started >= 3, "probing went on (what makes the climb fast): {s:?}");
        assert_eq!(s.unknown_seqs, 0, "every seq matched across the u16 wrap");
    }

    #[test]
    fn climbs_quickly_when_the_bottleneck_lifts() {
        // Failed probes back off up to 4 s, so where the lift falls in that cycle matters:
        // try every half second of it, with RTX-sized and padding-only-sized probe packets.
        let mut worst = Duration::ZERO;
        for padding_packet in [MEDIA_PACKET, 270] {
            for lift_ms in (20_000..=24_000).step_by(500) {
                let mut sim = Sim::new(1, BweConfig::default(), 400_000, 0.0, 3_000_000);
                sim.padding_packet = padding_packet;
                sim.run_for(ms(lift_ms));
                let lifted = sim.now - sim.t0;
                let before = sim.bwe.estimate_bps();
                sim.link.rate_bps = 5_000_000;
                sim.run_for(Duration::from_secs(15));
                let reached = sim.since(lifted).find(|&(_, e)| e >= 2_500_000).map(|(t, _)| t - lifted);
                let Some(reached) = reached else { panic!("padding {padding_packet}, lift at {lift_ms} ms: never") };
                eprintln!("lift at {lift_ms} ms, padding {padding_packet}: {before} -> 2.5M in {reached:?}");
                assert!(reached <= Duration::from_secs(10), "took {reached:?}");
                worst = worst.max(reached);
                // ... and stays near what is wanted without claiming more than the link.
                let after: Vec<u64> = sim.since(lifted + reached).map(|(_, e)| e).collect();
                assert!(after.iter().all(|&e| (2_000_000..=5_000_000).contains(&e)), "{:?}", after.iter().min());
                assert_eq!(sim.bwe.stats().unknown_seqs, 0);
            }
        }
        eprintln!("lifted: worst climb {worst:?}");
    }

    #[test]
    fn settles_under_other_bottlenecks_and_rtts() {
        for (link_bps, one_way_ms) in
            [(300_000, 20), (600_000, 20), (1_200_000, 20), (2_000_000, 50), (400_000, 5), (400_000, 80)]
        {
            let mut sim = Sim::new(3, BweConfig::default(), link_bps, 0.0, 5_000_000);
            sim.link.delay = ms(one_way_ms);
            sim.run_for(Duration::from_secs(30));
            let late: Vec<u64> = sim.since(Duration::from_secs(5)).map(|(_, e)| e).collect();
            let (min, max) = (*late.iter().min().unwrap(), *late.iter().max().unwrap());
            let mean = late.iter().sum::<u64>() / late.len() as u64;
            eprintln!("{link_bps} bit/s, {one_way_ms} ms: after 5 s min {min} mean {mean} max {max}");
            assert!(max <= link_bps, "{link_bps}: max {max}");
            assert!(min >= link_bps / 2, "{link_bps}: min {min}");
            assert!(mean >= link_bps * 7 / 10, "{link_bps}: mean {mean}");
        }
    }

    #[test]
    fn random_loss_does_not_make_it_flap() {
        for seed in [7, 8, 9, 10] {
            let mut sim = Sim::new(seed, BweConfig::default(), 5_000_000, 0.03, 2_000_000);
            sim.run_for(Duration::from_secs(30));
            sim.summary("3% loss");
            let min = sim.since(Duration::from_secs(5)).map(|(_, e)| e).min().unwrap();
            let reached = sim.trace.iter().find(|&&(_, e)| e >= 2_000_000).map(|&(t, _)| t);
            eprintln!("3% loss, seed {seed}: min after 5 s {min}, reached 2 Mbit/s at {reached:?}");
            assert!(min >= 1_500_000, "seed {seed}: dropped to {min}");
            // No flapping: once up, the estimate never steps down (a loss reaction would).
            let late: Vec<u64> = sim.since(Duration::from_secs(5)).map(|(_, e)| e).collect();
            let drops = late.windows(2).filter(|w| w[1] < w[0] * 9 / 10).count();
            assert_eq!(drops, 0, "seed {seed}: stepped down {drops} times");
            let s = sim.bwe.stats();
            let seen = s.packets_lost as f64 / s.packets_reported as f64;
            assert!((0.025..=0.035).contains(&seen), "the loss was seen: {seen}");
            assert_eq!(s.overuse_events, 0, "random loss is not queueing");
        }
    }

    /// A transport-cc feedback body (after the RTCP header): `arrivals[i]` is the receive delta
    /// of `base + i` in 250 µs ticks, `None` if lost.
    fn feedback_body(base: u16, reference: u32, arrivals: &[Option<u8>]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(&base.to_be_bytes());
        b.extend_from_slice(&(arrivals.len() as u16).to_be_bytes());
        b.extend_from_slice(&((reference & 0x00ff_ffff) << 8).to_be_bytes());
        for chunk in arrivals.chunks(7) {
            // Two-bit status vector: 1 = received with a small delta.
            let mut c = 0xc000u16;
            for (i, a) in chunk.iter().enumerate() {
                if a.is_some() {
                    c |= 1 << (12 - 2 * i);
                }
            }
            b.extend_from_slice(&c.to_be_bytes());
        }
        b.extend(arrivals.iter().flatten());
        b
    }

    #[test]
    fn feedback_body_helper_is_valid_transport_cc() {
        let body = feedback_body(65_534, 7, &[Some(4), None, Some(8)]);
        let fb = TwccFeedback::parse(&body).unwrap();
        assert_eq!(fb.reference_time, 7);
        assert_eq!(fb.packets().collect::<Vec<_>>(), vec![(65_534, Some(1000)), (65_535, None), (0, Some(2000))]);
    }

    #[test]
    fn unknown_duplicate_and_forgotten_seqs_are_counted() {
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(t0, BweConfig::default());
        // Nothing sent yet: everything is unknown.
        let body = feedback_body(100, 0, &[Some(4); 10]);
        bwe.handle_twcc_feedback(t0, &TwccFeedback::parse(&body).unwrap());
        assert_eq!((bwe.stats().feedbacks, bwe.stats().unknown_seqs), (1, 10));

        // Sent 100..110; feedback for 90..120: 10 unknown below, 10 unknown above.
        for (i, seq) in (100u16..110).enumerate() {
            bwe.on_packet_sent(t0 + ms(5 * i as u64), seq, 1200, false);
        }
        let body = feedback_body(90, 1, &[Some(20); 30]);
        let now = t0 + ms(100);
        bwe.handle_twcc_feedback(now, &TwccFeedback::parse(&body).unwrap());
        let s = bwe.stats();
        assert_eq!((s.unknown_seqs, s.duplicate_seqs), (30, 0));
        // The same feedback again: the known ones are duplicates, not counted twice.
        bwe.handle_twcc_feedback(now, &TwccFeedback::parse(&body).unwrap());
        let s = bwe.stats();
        assert_eq!((s.unknown_seqs, s.duplicate_seqs), (50, 10));

        // Packets older than the history are forgotten: feedback for them is unknown.
        let mut seq = 110u16;
        for i in 0..300u64 {
            bwe.on_packet_sent(now + ms(10 * i), seq, 1200, false);
            seq = seq.wrapping_add(1);
        }
        let late = now + ms(3000);
        let body = feedback_body(110, 40, &[Some(1); 3]);
        bwe.handle_twcc_feedback(late, &TwccFeedback::parse(&body).unwrap());
        assert_eq!(bwe.stats().unknown_seqs, 53);
        // A seq far ahead of anything sent.
        let body = feedback_body(seq.wrapping_add(1000), 41, &[Some(1)]);
        bwe.handle_twcc_feedback(late, &TwccFeedback::parse(&body).unwrap());
        assert_eq!(bwe.stats().unknown_seqs, 54);
        assert_eq!(bwe.stats().feedbacks, 5);
    }

    #[test]
    fn random_feedback_never_panics_and_keeps_the_estimate_in_bounds() {
        let config = BweConfig { initial_bps: 500_000, min_bps: 150_000, max_bps: 3_000_000 };
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(t0, config);
        let mut rng = Prng(11);
        let mut buf = [0u8; 96];
        let mut parsed = 0;
        let mut seq = 0u16;
        for i in 0..50_000u64 {
            let now = t0 + ms(i);
            // Real sends, so some random seqs hit the history.
            bwe.on_packet_sent(now, seq, 1200, false);
            seq = seq.wrapping_add(1);
            bwe.set_desired_bps(now, 2_000_000);
            let pad = bwe.poll_probe_bytes(now);
            if pad > 0 {
                bwe.on_packet_sent(now, seq, pad, true);
                seq = seq.wrapping_add(1);
            }
            let len = (rng.next_u64() % buf.len() as u64) as usize;
            for b in buf[..len].iter_mut() {
                *b = rng.next_u64() as u8;
            }
            if len > 11 {
                // Plausible status counts, and base seqs near what was sent half the time.
                buf[10] = 0;
                buf[11] &= 0x3f;
                if i % 2 == 0 {
                    let base = seq.wrapping_sub(u16::from(buf[9]) % 64);
                    buf[8..10].copy_from_slice(&base.to_be_bytes());
                }
            }
            if let Ok(fb) = TwccFeedback::parse(&buf[..len]) {
                bwe.handle_twcc_feedback(now, &fb);
                parsed += 1;
            }
            if i % 997 == 0 {
                bwe.handle_remb(now, rng.next_u64() >> (rng.next_u64() % 64));
            }
            let e = bwe.estimate_bps();
            assert!((config.min_bps..=config.max_bps).contains(&e), "{e} at {i}");
        }
        let s = bwe.stats();
        assert!(parsed > 5_000, "only {parsed} parsed: the input is not reaching the estimator");
        assert_eq!(s.feedbacks, parsed);
        assert!(s.unknown_seqs > 0 && s.duplicate_seqs > 0, "{s:?}");
    }

    #[test]
    fn reference_time_and_seq_wrap_together() {
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(t0, BweConfig::default());
        // 40 packets 4 ms apart across the seq wrap; they arrive 4 ms apart too, the first
        // feedback at the last reference time before the 24-bit wrap, the second after it.
        let first = 65_516u16;
        for i in 0..40u16 {
            bwe.on_packet_sent(t0 + ms(4 * u64::from(i)), first.wrapping_add(i), 1000, false);
        }
        // 20 packets × 4 ms = 80 ms: the second batch starts at reference + 1 (64 ms) + 16 ms.
        let mut a = vec![Some(16u8); 20];
        a[0] = Some(0);
        bwe.handle_twcc_feedback(t0 + ms(150), &TwccFeedback::parse(&feedback_body(first, 0xff_ffff, &a)).unwrap());
        let mut b = vec![Some(16u8); 20];
        b[0] = Some(64); // 16 ms after the reference of 64 ms later
        let second = first.wrapping_add(20);
        bwe.handle_twcc_feedback(t0 + ms(230), &TwccFeedback::parse(&feedback_body(second, 0, &b)).unwrap());
        assert_eq!(bwe.last_reference, Some(0x100_0000), "unwrapped forward, not back by 2^24");
        let s = bwe.stats();
        assert_eq!(s.unknown_seqs, 0);
        // 39 packets of 1000 bytes over 156 ms: an arrival span broken by the wrap would not
        // give this.
        let acked = s.acked_bps.unwrap();
        assert!((1_900_000..=2_100_000).contains(&acked), "acked {acked}");
        assert_eq!(s.overuse_events, 0);
        // And back again: an older reference (reordered feedback) unwraps backwards.
        bwe.handle_twcc_feedback(t0 + ms(240), &TwccFeedback::parse(&feedback_body(first, 0xff_fffe, &[])).unwrap());
        assert_eq!(bwe.last_reference, Some(0xff_fffe));
    }

    #[test]
    fn remb_drives_the_estimate_without_transport_cc() {
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(t0, BweConfig::default());
        bwe.set_desired_bps(t0, 5_000_000);
        let mut buf = [0u8; 64];
        for (i, (remb, want)) in [
            (700_000, 700_000),
            (2_000_000, 2_000_000),
            (450_000, 450_000),
            (50_000, 100_000),        // clamped to min_bps
            (40_000_000, 10_000_000), // clamped to max_bps
            (1_234_000, 1_234_000),
        ]
        .into_iter()
        .enumerate()
        {
            let now = t0 + ms(500 * i as u64);
            // Through the wire format: REMB keeps 18 bits of mantissa.
            let n = rtcp::write_remb(&mut buf, 1, remb, &[2]).unwrap();
            let Some(Ok(RtcpPacket::Remb { bitrate_bps, .. })) = rtcp::packets(&buf[..n]).next() else { panic!() };
            bwe.handle_remb(now, bitrate_bps);
            let got = bwe.estimate_bps();
            assert!(got.abs_diff(want) <= want / 1000, "REMB {remb}: estimate {got}, want {want}");
            assert!(bwe.stats().remb_fallback);
            // No probing without feedback to measure it by.
            assert_eq!(bwe.poll_probe_bytes(now), 0);
        }
        assert_eq!(bwe.stats().probes_started, 0);

        // Once transport-cc feedback flows, REMB is ignored ...
        let now = t0 + ms(3000);
        bwe.on_packet_sent(now, 0, 1200, false);
        bwe.handle_twcc_feedback(now + ms(50), &TwccFeedback::parse(&feedback_body(0, 0, &[Some(1)])).unwrap());
        assert!(!bwe.stats().remb_fallback);
        let before = bwe.estimate_bps();
        bwe.handle_remb(now + ms(100), 300_000);
        assert_eq!(bwe.estimate_bps(), before);
        // ... until it has been silent for 2 s.
        bwe.handle_remb(now + ms(2100), 300_000);
        assert_eq!(bwe.estimate_bps(), 300_000);
        assert_eq!(bwe.stats().rembs, 8);
    }

    #[test]
    fn probes_only_when_more_is_wanted_and_pad_at_the_probe_rate() {
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(t0, BweConfig::default());
        let mut seq = 0u16;
        let mut send = |bwe: &mut BandwidthEstimator, now, size, probe| {
            bwe.on_packet_sent(now, seq, size, probe);
            seq = seq.wrapping_add(1);
        };
        // Wanting no more than the estimate: never any padding.
        bwe.set_desired_bps(t0, 900_000);
        for i in 0..300u64 {
            assert_eq!(bwe.poll_probe_bytes(t0 + ms(10 * i)), 0);
        }
        // Wanting 1.5 Mbit/s: a cluster at min(2 × 1M, 1.2 × 1.5M) = 1.8 Mbit/s, media included.
        let start = t0 + ms(3000);
        bwe.set_desired_bps(start, 1_500_000);
        let (mut padding, mut media) = (0usize, 0usize);
        for i in 0..40u64 {
            let now = start + ms(10 * i);
            send(&mut bwe, now, 1200, false); // 960 kbit/s of media
            media += 1200;
            let pad = bwe.poll_probe_bytes(now);
            padding += pad;
            if pad > 0 {
                send(&mut bwe, now, pad, true);
            }
        }
        let s = bwe.stats();
        assert_eq!(s.probes_started, 1);
        let cluster_bytes = 1_800_000.0 * 0.160 / 8.0; // 150 ms + one tick ahead
        let total_in_cluster = padding + 16 * 1200;
        assert!(
            (total_in_cluster as f64 - cluster_bytes).abs() < 2400.0,
            "padding {padding} + cluster media vs {cluster_bytes}"
        );
        assert!(padding > 0 && padding < media);
        assert_eq!(s.probe_bytes_sent, padding as u64);
        // The cluster ended; without feedback it times out (a failure), so the next one waits
        // twice the interval from the first one's start, and the one after that twice again.
        for i in 40..200u64 {
            assert_eq!(bwe.poll_probe_bytes(start + ms(10 * i)), 0, "at {i}");
        }
        assert!(bwe.poll_probe_bytes(start + ms(2000)) > 0);
        for i in 201..600u64 {
            bwe.poll_probe_bytes(start + ms(10 * i));
        }
        assert_eq!(bwe.stats().probes_started, 2);
        assert!(bwe.poll_probe_bytes(start + ms(6000)) > 0);
        assert_eq!(bwe.stats().probes_started, 3);
    }

    #[test]
    fn probe_result_needs_ninety_percent_of_the_sent_rate() {
        // 20 packets of 1000 bytes sent over 100 ms (1.52 Mbit/s without the last one);
        // arrivals spread over `recv_span_ms`, `received` of them.
        let cluster = |received: u32, recv_span_ms: i64| {
            let mut c = Cluster {
                id: 1,
                start: Instant::now(),
                duration: PROBE_DURATION,
                target_bps: 1.5e6,
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
            };
            for i in 0..20 {
                c.on_sent(i * 100_000 / 19, i, 1000);
            }
            for i in 0..i64::from(received) {
                c.on_received(50_000 + i * recv_span_ms * 1000 / (i64::from(received) - 1).max(1), 1000);
            }
            c.result_bps()
        };
        let sent = 19.0 * 8000.0 / 0.1;
        for (name, received, span_ms, want) in [
            ("carried at the sent rate", 20, 100, Some(0.95 * sent)),
            ("arrived 5 % slower", 20, 105, Some(0.95 * sent / 1.05)),
            ("arrived 15 % slower: queueing", 20, 115, None),
            ("half the rate: a bottleneck", 20, 200, None),
            ("a quarter lost, the rest on time", 15, 75, None),
            ("too few received", 4, 20, None),
            ("arrived compressed: not above the sent rate", 20, 50, Some(0.95 * sent)),
        ] {
            let got = cluster(received, span_ms);
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1.0, "{name}: {g} vs {w}"),
                (g, w) => assert_eq!(g, w, "{name}"),
            }
        }
    }

    #[test]
    fn history_is_bounded() {
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(t0, BweConfig::default());
        // 40k packets in 1 s (a flood): capped by count.
        for i in 0..40_000u32 {
            bwe.on_packet_sent(t0 + Duration::from_micros(u64::from(i) * 25), i as u16, 200, false);
        }
        assert_eq!(bwe.history.packets.len(), HISTORY_MAX_PACKETS);
        // 100 packets/s for 10 s: capped by age.
        for i in 0..1000u32 {
            bwe.on_packet_sent(t0 + Duration::from_secs(2) + ms(u64::from(i) * 10), (40_000 + i) as u16, 1200, false);
        }
        assert!(bwe.history.packets.len() <= 201, "{}", bwe.history.packets.len());
        // A jump far ahead restarts the history instead of filling a huge gap.
        bwe.on_packet_sent(t0 + Duration::from_secs(13), (40_999u32 + 20_000) as u16, 1200, false);
        assert_eq!(bwe.history.packets.len(), 1);
    }

    #[test]
    fn trendline_flags_a_growing_queue_not_a_steady_or_jittery_one() {
        type Case = (&'static str, fn(u32) -> f64, bool);
        let cases: [Case; 3] = [
            ("steady", |_| 10.0, false),
            ("jitter ±2 ms", |i| if i % 2 == 0 { 12.0 } else { 8.0 }, false),
            ("queue grows 10 %", |_| 11.0, true),
        ];
        for (name, arrival_delta, overuse) in cases {
            let mut t = Trendline::new();
            let mut at = 0.0;
            let mut detected = false;
            for i in 0..200 {
                let d = arrival_delta(i);
                at += d;
                detected |= t.update(10.0, d, at);
            }
            assert_eq!(detected, overuse, "{name}: threshold {}", t.threshold_ms);
        }
    }

    #[test]
    fn misconfigured_bounds_do_not_panic() {
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(t0, BweConfig { initial_bps: 0, min_bps: 500_000, max_bps: 100 });
        assert_eq!(bwe.estimate_bps(), 500_000);
        bwe.handle_remb(t0, 0);
        assert_eq!(bwe.estimate_bps(), 500_000);
    }
}
