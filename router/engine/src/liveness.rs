//! Whether a simulcast layer is *live*: carrying media frames now, not just packets.
//!
//! A publisher's browser stops encoding its upper layers when its CPU or uplink runs short
//! (Chromium's `qualityLimitationReason` `cpu` or `bandwidth`), yet the stopped layers' streams
//! go on carrying packets: padding to probe the uplink (empty once the RTP padding is stripped),
//! RTX copies of packets already sent, late retransmissions. A layer judged by packets looks
//! healthy while no subscriber can decode a thing from it; a layer judged by frames does not.
//!
//! [`LayerLiveness`] counts a *new frame* when a packet has media payload and an RTP timestamp
//! newer than any frame seen on the layer (a retransmission or redundant copy carries an old
//! timestamp; padding carries no payload). Duplicates never get here: the engine drops a
//! sequence number its retransmission cache already holds before it looks. The layer is live
//! from its first new frame until no new frame has come for [`LayerLiveness::stale_after`]:
//! four of its recent frame intervals, within [`MIN_STALE`] and [`MAX_STALE`]. At 30 frames a
//! second a stopped layer is seen within 250 ms; a layer the browser slowed to a few frames a
//! second is given proportionally longer, so a slow layer is not mistaken for a stopped one.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use router_engine::liveness::LayerLiveness;
//! let t0 = Instant::now();
//! let ms = |n| t0 + Duration::from_millis(n);
//! let mut l = LayerLiveness::new();
//! for i in 0..30u32 {
//!     l.on_packet(ms(u64::from(i) * 33), i * 3000, 1000, 90_000);
//! }
//! assert!(l.is_live());
//! l.on_packet(ms(1100), 29 * 3000, 0, 90_000); // padding: no payload, the last timestamp
//! assert_eq!(l.poll_change(ms(1300)), Some(false)); // no new frame for 330 ms: stopped
//! l.on_packet(ms(1400), 47 * 3000, 1000, 90_000); // frames again
//! assert!(l.is_live());
//! ```

use std::time::{Duration, Instant};

/// The shortest time without a new frame that makes a layer not live: at 30 frames a second
/// about seven frames, more than an encoder skips when it is merely busy.
pub const MIN_STALE: Duration = Duration::from_millis(250);
/// The longest: a layer slowed to one frame a second (Chromium sends a disabled camera track's
/// black frames about so often) stays live.
pub const MAX_STALE: Duration = Duration::from_millis(1500);
/// Frame intervals longer than this are a stop and a restart, not the layer's frame rate.
const MAX_INTERVAL_SAMPLE: Duration = Duration::from_millis(1000);
/// Before the first interval is measured: 30 frames a second.
const INITIAL_INTERVAL: Duration = Duration::from_micros(33_333);
/// A timestamp this far behind the newest frame (in seconds of the clock) is a restarted
/// stream, not an old packet: it starts the count again.
const RESET_BEHIND_SECS: u32 = 10;

/// Liveness of one layer: see the module documentation.
#[derive(Debug, Clone)]
pub struct LayerLiveness {
    /// The newest frame's RTP timestamp and when it arrived.
    newest: Option<(u32, Instant)>,
    /// Smoothed interval between new frames (an EWMA of 1/8).
    interval: Duration,
    /// The state last reported by [`LayerLiveness::poll_change`] or set by a new frame.
    live: bool,
    /// A frame made the layer live since the last poll (reported once).
    started: bool,
}

impl Default for LayerLiveness {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerLiveness {
    pub fn new() -> Self {
        LayerLiveness { newest: None, interval: INITIAL_INTERVAL, live: false, started: false }
    }

    /// A packet of the layer (not a duplicate): `payload_len` media bytes without RTP padding,
    /// `clock_rate` its RTP clock. Returns whether it started a new frame.
    pub fn on_packet(&mut self, now: Instant, timestamp: u32, payload_len: usize, clock_rate: u32) -> bool {
        if payload_len == 0 {
            return false;
        }
        if let Some((newest_ts, at)) = self.newest {
            let ahead = timestamp.wrapping_sub(newest_ts) as i32;
            let reset = -i64::from(ahead) > i64::from(clock_rate) * i64::from(RESET_BEHIND_SECS);
            if ahead <= 0 && !reset {
                return false;
            }
            let gap = now.saturating_duration_since(at);
            if gap <= MAX_INTERVAL_SAMPLE {
                self.interval = (self.interval * 7 + gap) / 8;
            }
        }
        self.newest = Some((timestamp, now));
        if !self.live {
            self.live = true;
            self.started = true;
        }
        true
    }

    /// How long without a new frame makes the layer not live, given its recent frame rate.
    pub fn stale_after(&self) -> Duration {
        (self.interval * 4).clamp(MIN_STALE, MAX_STALE)
    }

    /// Whether the layer is live, as of the last [`LayerLiveness::poll_change`] or new frame.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Re-judges the layer at `now`; returns the new state when it changed since the last
    /// poll. Called every engine tick, far more often than a layer can start and stop.
    pub fn poll_change(&mut self, now: Instant) -> Option<bool> {
        let fresh = self.newest.is_some_and(|(_, at)| now.saturating_duration_since(at) < self.stale_after());
        let started = std::mem::take(&mut self.started);
        if self.live && !fresh {
            self.live = false;
            return Some(false);
        }
        started.then_some(true)
    }

    /// Time since the newest frame, if any came.
    pub fn since_last_frame(&self, now: Instant) -> Option<Duration> {
        self.newest.map(|(_, at)| now.saturating_duration_since(at))
    }
}

/// A video consumer that has been sent no media for longer than this, while it wants video and a
/// layer it may have is live, is unserved: a keyframe wait at the start or at a switch is far
/// shorter.
pub const UNSERVED_AFTER: Duration = Duration::from_millis(500);

/// Time a consumer went without media although it wanted video, its bandwidth allowed some and
/// the publisher sent some: gaps over [`UNSERVED_AFTER`], each counted whole.
#[derive(Debug, Clone, Default)]
pub struct UnservedTime {
    /// Start of the current gap: the later of the last media sent and the moment video
    /// became wanted (a subscriber's own pause is no gap of the router's).
    since: Option<Instant>,
    /// How much of the current gap is already in `total`.
    counted: Duration,
    total: Duration,
}

impl UnservedTime {
    /// Updates at `now`; `wants` says whether video was wanted, allowed and sent, `last_media`
    /// when the consumer last sent media. Returns the time added to the total.
    pub fn update(&mut self, now: Instant, wants: bool, last_media: Option<Instant>) -> Duration {
        if !wants {
            self.since = None;
            self.counted = Duration::ZERO;
            return Duration::ZERO;
        }
        let since = match (self.since, last_media) {
            (Some(w), Some(at)) => w.max(at),
            (Some(w), None) => w,
            (None, _) => now,
        };
        if self.since != Some(since) {
            self.counted = Duration::ZERO;
            self.since = Some(since);
        }
        let gap = now.saturating_duration_since(since);
        if gap <= UNSERVED_AFTER {
            return Duration::ZERO;
        }
        let added = gap.saturating_sub(self.counted);
        self.counted = gap;
        self.total += added;
        added
    }

    pub fn total(&self) -> Duration {
        self.total
    }
}

/// The layer to give a subscriber that wants at most `wanted`, when only the layers for which
/// `available` says yes can be had: the best one at or below `wanted`, else the lowest above it
/// (a sharper picture beats none), else `None`. `layers` is how many the producer has.
pub fn best_available(wanted: u8, layers: u8, available: impl Fn(u8) -> bool) -> Option<u8> {
    let top = layers.checked_sub(1)?;
    let wanted = wanted.min(top);
    (0..=wanted).rev().find(|&l| available(l)).or_else(|| (wanted + 1..layers).find(|&l| available(l)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    /// Frames at `fps` from `from` ms for `dur_ms`, timestamps following the time.
    fn frames(l: &mut LayerLiveness, t0: Instant, from: u64, dur_ms: u64, fps: u64) {
        let step = 1000 / fps;
        let mut t = from;
        while t < from + dur_ms {
            l.on_packet(ms(t0, t), (t * 90) as u32, 900, 90_000);
            t += step;
        }
    }

    #[test]
    fn padding_retransmissions_and_old_copies_are_not_frames() {
        let t0 = Instant::now();
        let mut l = LayerLiveness::new();
        assert!(!l.on_packet(t0, 1000, 0, 90_000), "padding (no payload) is no frame");
        assert!(!l.is_live());
        assert!(l.on_packet(t0, 1000, 500, 90_000), "media is a frame");
        assert!(!l.on_packet(ms(t0, 1), 1000, 500, 90_000), "another packet of the same frame");
        assert!(!l.on_packet(ms(t0, 2), 900, 500, 90_000), "an older frame (a retransmission)");
        assert!(l.on_packet(ms(t0, 33), 4000, 500, 90_000));
        // Timestamps wrap.
        let mut w = LayerLiveness::new();
        assert!(w.on_packet(t0, u32::MAX - 100, 10, 90_000));
        assert!(w.on_packet(ms(t0, 33), 2900, 10, 90_000));
        // A stream restarted with a timestamp far behind starts the count again.
        assert!(w.on_packet(ms(t0, 66), 2900u32.wrapping_sub(90_000 * 20), 10, 90_000));
    }

    #[test]
    fn a_stop_is_seen_within_a_quarter_second_at_30_fps_and_a_start_at_once() {
        let t0 = Instant::now();
        let mut l = LayerLiveness::new();
        assert_eq!(l.poll_change(t0), None, "nothing yet");
        frames(&mut l, t0, 0, 1000, 30);
        assert_eq!(l.poll_change(ms(t0, 1000)), Some(true));
        assert_eq!(l.poll_change(ms(t0, 1010)), None, "reported once");
        // The last frame was at 990 ms; padding keeps coming, frames do not.
        for t in (1000..1400).step_by(20) {
            l.on_packet(ms(t0, t), 990 * 90, 0, 90_000);
        }
        let stopped_at =
            (1000..2000).step_by(10).find(|&t| l.poll_change(ms(t0, t)) == Some(false)).expect("stop seen");
        assert!(stopped_at - 990 <= 260, "stop seen {} ms after the last frame", stopped_at - 990);
        assert!(!l.is_live());
        // One frame makes it live again at once.
        assert!(l.on_packet(ms(t0, 3000), 3000 * 90, 900, 90_000));
        assert!(l.is_live());
        assert_eq!(l.poll_change(ms(t0, 3000)), Some(true));
    }

    #[test]
    fn a_slow_layer_is_not_a_stopped_one() {
        let t0 = Instant::now();
        // Slowed to 5 frames a second: 200 ms gaps stay live once the rate is learnt.
        let mut l = LayerLiveness::new();
        frames(&mut l, t0, 0, 1000, 30);
        assert_eq!(l.poll_change(ms(t0, 1000)), Some(true));
        frames(&mut l, t0, 1000, 5000, 5);
        let mut changes = Vec::new();
        for t in (2000..6000).step_by(10) {
            if let Some(c) = l.poll_change(ms(t0, t)) {
                changes.push((t, c));
            }
        }
        assert!(changes.is_empty(), "{changes:?}");
        // One frame a second (a disabled camera's black frames) stays live too.
        let mut one = LayerLiveness::new();
        for s in 0..10u64 {
            one.on_packet(ms(t0, s * 1000), (s * 90_000) as u32, 100, 90_000);
            for t in (s * 1000 + 1..(s + 1) * 1000).step_by(50) {
                let change = one.poll_change(ms(t0, t));
                assert!(change != Some(false) || s < 3, "stopped at {t} ms");
            }
        }
        assert!(one.is_live());
    }

    #[test]
    fn unserved_time_counts_whole_gaps_past_the_grace_from_when_video_is_wanted() {
        let t0 = Instant::now();
        let mut u = UnservedTime::default();
        // Wanted from 0; media at 100 ms, then nothing.
        assert_eq!(u.update(ms(t0, 0), true, None), Duration::ZERO);
        assert_eq!(u.update(ms(t0, 400), true, Some(ms(t0, 100))), Duration::ZERO, "within the grace");
        assert_eq!(u.update(ms(t0, 700), true, Some(ms(t0, 100))), Duration::from_millis(600), "the whole gap");
        assert_eq!(u.update(ms(t0, 800), true, Some(ms(t0, 100))), Duration::from_millis(100));
        // Media again: a new gap, under the grace.
        assert_eq!(u.update(ms(t0, 900), true, Some(ms(t0, 890))), Duration::ZERO);
        // Not wanted (the subscriber paused) for a second: no gap; wanted again starts a new one.
        assert_eq!(u.update(ms(t0, 1900), false, Some(ms(t0, 890))), Duration::ZERO);
        assert_eq!(u.update(ms(t0, 2000), true, Some(ms(t0, 890))), Duration::ZERO);
        assert_eq!(u.update(ms(t0, 2400), true, Some(ms(t0, 890))), Duration::ZERO);
        assert_eq!(u.total(), Duration::from_millis(700));
    }

    #[test]
    fn best_available_prefers_below_then_above() {
        // (wanted, live layers, expected)
        let cases: [(u8, [bool; 3], Option<u8>); 9] = [
            (2, [true, true, true], Some(2)),
            (2, [true, true, false], Some(1)),
            (2, [true, false, false], Some(0)),
            (2, [false, false, false], None),
            (1, [true, false, true], Some(0)),
            (0, [false, true, true], Some(1)),
            (0, [false, false, true], Some(2)),
            (1, [false, false, true], Some(2)),
            (7, [true, true, true], Some(2)),
        ];
        for (wanted, live, expected) in cases {
            assert_eq!(best_available(wanted, 3, |l| live[usize::from(l)]), expected, "{wanted} {live:?}");
        }
        assert_eq!(best_available(2, 1, |_| true), Some(0), "a plain track has one layer");
        assert_eq!(best_available(2, 0, |_| true), None);
    }
}
