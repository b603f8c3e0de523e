//! The delay-based half: send groups, inter-arrival deltas, the trendline overuse detector and its AIMD rate control.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{ACKED_CAP_BPS, ACKED_CAP_FACTOR, BandwidthUsage, GROWTH_PER_S};

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

const MIN_ADDITIVE_BPS_PER_S: f64 = 4_000.0;

const MIN_DECREASE_INTERVAL: Duration = Duration::from_millis(10);

const MAX_DECREASE_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy)]
pub(super) struct Group {
    pub(super) first_send_us: i64,
    pub(super) last_send_us: i64,
    pub(super) last_arrival_us: i64,
}

/// Groups received packets into send bursts and yields `(send delta, arrival delta)` between
/// consecutive complete groups.
#[derive(Debug, Default)]
pub(super) struct InterArrival {
    pub(super) current: Option<Group>,
    pub(super) previous: Option<Group>,
}

pub(super) enum GroupDelta {
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
    pub(super) fn add(&mut self, send_us: i64, arrival_us: i64) -> GroupDelta {
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
pub(super) struct Trendline {
    pub(super) deltas: u32,
    pub(super) accumulated_ms: f64,
    pub(super) smoothed_ms: f64,
    pub(super) first_arrival_ms: Option<f64>,
    pub(super) window: VecDeque<(f64, f64)>,
    pub(super) trend: f64,
    pub(super) prev_trend: f64,
    pub(super) threshold_ms: f64,
    pub(super) last_threshold_ms: Option<f64>,
    /// Time spent over the threshold; negative when not over it.
    pub(super) overusing_ms: f64,
    pub(super) overuse_hits: u32,
    pub(super) state: BandwidthUsage,
}

impl Trendline {
    pub(super) fn new() -> Self {
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
    pub(super) fn reset(&mut self) {
        *self = Trendline { threshold_ms: self.threshold_ms, last_threshold_ms: None, ..Trendline::new() };
    }

    /// Returns true when this update detected overuse.
    pub(super) fn update(&mut self, send_delta_ms: f64, arrival_delta_ms: f64, arrival_ms: f64) -> bool {
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

    pub(super) fn detect(&mut self, send_delta_ms: f64, now_ms: f64) -> bool {
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

    pub(super) fn adapt_threshold(&mut self, modified: f64, now_ms: f64) {
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
pub(super) fn slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) =
        points.iter().fold((0.0, 0.0), |(a, b), &(x, y)| (a + (x - mx) * (y - my), b + (x - mx) * (x - mx)));
    (den > f64::EPSILON).then(|| num / den)
}

/// AIMD on the delay detector's signal.
#[derive(Debug)]
pub(super) struct DelayBased {
    pub(super) bps: f64,
    /// False after a decrease or on underuse, until the detector says normal again.
    pub(super) increasing: bool,
    pub(super) last_update: Option<Instant>,
    pub(super) last_decrease: Option<Instant>,
    /// Acknowledged rate at recent overuses.
    pub(super) capacity_bps: Option<f64>,
}

impl DelayBased {
    pub(super) fn update(&mut self, now: Instant, usage: BandwidthUsage, acked: Option<f64>, rtt: Duration) {
        match usage {
            BandwidthUsage::Overusing => self.decrease(now, acked, rtt),
            BandwidthUsage::Underusing => self.increasing = false,
            BandwidthUsage::Normal if !self.increasing => self.increasing = true,
            BandwidthUsage::Normal => self.increase(now, acked, rtt),
        }
        self.last_update = Some(now);
    }

    pub(super) fn decrease(&mut self, now: Instant, acked: Option<f64>, rtt: Duration) {
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

    pub(super) fn increase(&mut self, now: Instant, acked: Option<f64>, rtt: Duration) {
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
pub(super) fn additive_bps_per_s(bps: f64, rtt: Duration) -> f64 {
    let response_s = (rtt + Duration::from_millis(100)).as_secs_f64();
    let bits_per_frame = bps / 30.0;
    let packets_per_frame = (bits_per_frame / (1200.0 * 8.0)).ceil().max(1.0);
    (bits_per_frame / packets_per_frame / response_s).max(MIN_ADDITIVE_BPS_PER_S)
}
