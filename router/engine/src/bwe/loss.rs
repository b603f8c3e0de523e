//! The loss-based half: the estimate held down by the loss fraction over the last second.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::GROWTH_PER_S;

const LOSS_WINDOW: Duration = Duration::from_secs(1);

const LOSS_MIN_PACKETS: u32 = 20;

const LOSS_LOW: f64 = 0.02;

const LOSS_HIGH: f64 = 0.10;

#[derive(Debug)]
pub(super) struct LossBased {
    pub(super) bps: f64,
    /// `(feedback time, reported, lost)` per feedback.
    pub(super) window: VecDeque<(Instant, u32, u32)>,
    pub(super) last_update: Option<Instant>,
    pub(super) last_decrease: Option<Instant>,
    pub(super) last_fraction: f64,
}

impl LossBased {
    pub(super) fn update(&mut self, now: Instant, reported: u32, lost: u32, current: f64, acked: Option<f64>) {
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
