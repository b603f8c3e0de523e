//! `--drop-layers <period>`: simulcast publishers that stop and restore their upper layers, as
//! Chromium does under CPU or bandwidth limits. For `period` a publisher sends only
//! `q` frames while its `h` and `f` streams carry padding; then for `period` all layers again,
//! each resumed layer starting with a keyframe; and so on.
//!
//! What a stopped layer sends is what Chromium's padding looks like to the router once the
//! padding bytes are stripped: RTP packets on the layer's SSRC with an **empty payload**, the
//! next sequence number and the layer's last frame's timestamp, about five a second (str0m
//! takes an empty payload as it is). A keyframe request (PLI/FIR) for a stopped layer is
//! ignored: a browser that is not encoding a layer cannot send its keyframe.
//!
//! Publishers do not flip together: publisher `k` of the `n` video publishers in its room runs
//! the cycle (2 × `period`) shifted by `k / n` of it, on the run's clock. With two publishers
//! one stops while the other resumes.
//!
//! Sans-IO: [`LayerDrop::on_tick`] takes the run's time and says what the layer does at that
//! frame tick.

use std::time::Duration;

/// A stopped layer sends one padding packet every this many frame ticks (30 fps: 5 a second).
pub const PAD_EVERY_TICKS: u32 = 6;

/// When one publisher's upper layers are stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropSchedule {
    period_us: u64,
    offset_us: u64,
}

impl DropSchedule {
    /// The schedule of video publisher `k` of `n` in its room. `period` must not be zero.
    pub fn new(period: Duration, k: u32, n: u32) -> DropSchedule {
        let period_us = u64::try_from(period.as_micros()).unwrap_or(u64::MAX).max(1);
        let cycle = period_us.saturating_mul(2);
        let offset_us = cycle / u64::from(n.max(1)) * u64::from(k % n.max(1));
        DropSchedule { period_us, offset_us }
    }

    /// Whether the upper layers are stopped at `now_us` on the run's clock.
    pub fn dropped(&self, now_us: u64) -> bool {
        (now_us.saturating_add(self.offset_us) / self.period_us) % 2 == 1
    }
}

/// What an upper layer does at one frame tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Send a frame; `keyframe` when the layer resumes (as a browser's encoder restarts).
    Frame { keyframe: bool },
    /// Stopped: send one padding packet.
    Padding,
    /// Stopped: send nothing.
    Nothing,
}

/// One upper layer under [`DropSchedule`].
#[derive(Debug, Clone)]
pub struct LayerDrop {
    schedule: DropSchedule,
    dropped: bool,
    ticks: u32,
    /// How many times the layer stopped.
    pub stops: u64,
}

impl LayerDrop {
    pub fn new(schedule: DropSchedule) -> LayerDrop {
        LayerDrop { schedule, dropped: false, ticks: 0, stops: 0 }
    }

    /// The layer's frame tick at `now_us` on the run's clock.
    pub fn on_tick(&mut self, now_us: u64) -> Tick {
        if self.schedule.dropped(now_us) {
            if !self.dropped {
                self.dropped = true;
                self.ticks = 0;
                self.stops += 1;
            }
            let pad = self.ticks.is_multiple_of(PAD_EVERY_TICKS);
            self.ticks = self.ticks.wrapping_add(1);
            return if pad { Tick::Padding } else { Tick::Nothing };
        }
        let resumed = std::mem::replace(&mut self.dropped, false);
        Tick::Frame { keyframe: resumed }
    }

    /// Stopped now (keyframe requests are ignored).
    pub fn is_dropped(&self) -> bool {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_alternate_and_are_staggered() {
        let p = Duration::from_secs(3);
        let first = DropSchedule::new(p, 0, 2);
        let second = DropSchedule::new(p, 1, 2);
        // The first sends all layers for 3 s, then stops them for 3 s; the second the opposite.
        for (t, want) in [(0, false), (2_999_999, false), (3_000_000, true), (5_999_999, true), (6_000_000, false)] {
            assert_eq!(first.dropped(t), want, "first at {t}");
            assert_eq!(second.dropped(t), !want, "second at {t}");
        }
        // Four publishers: shifted by a quarter of the 6 s cycle each, so the second of four
        // stops 1.5 s in, and the third of four runs as the second of two.
        let second_of_four = DropSchedule::new(p, 1, 4);
        assert!(!second_of_four.dropped(1_499_999) && second_of_four.dropped(1_500_000));
        assert_eq!(DropSchedule::new(p, 2, 4), second);
        assert_eq!(DropSchedule::new(p, 4, 4), DropSchedule::new(p, 0, 4), "the shift wraps");
    }

    #[test]
    fn a_stopped_layer_pads_and_resumes_on_a_keyframe() {
        let mut l = LayerDrop::new(DropSchedule::new(Duration::from_secs(1), 0, 1));
        let mut ticks = Vec::new();
        // 30 ticks a second, exactly: tick 30 is at 1 s.
        for f in 0..90u64 {
            ticks.push(l.on_tick(f * 1_000_000 / 30));
        }
        let frames = |r: std::ops::Range<usize>| ticks[r].iter().all(|t| matches!(t, Tick::Frame { keyframe: false }));
        // Frames for the first second, then stopped.
        assert!(frames(0..30));
        let stopped = &ticks[30..60];
        assert_eq!(stopped.iter().filter(|t| **t == Tick::Padding).count(), 5, "{stopped:?}");
        assert!(stopped.iter().all(|t| matches!(t, Tick::Padding | Tick::Nothing)));
        assert_eq!(ticks[30], Tick::Padding, "padding starts at once");
        // Resumed: a keyframe first, then ordinary frames.
        assert_eq!(ticks[60], Tick::Frame { keyframe: true });
        assert!(frames(61..90));
        assert_eq!(l.stops, 1);
        assert!(!l.is_dropped());
        l.on_tick(1_000_000 * 3);
        assert!(l.is_dropped());
    }
}
