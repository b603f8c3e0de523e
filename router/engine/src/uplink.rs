//! Stopping simulcast layers nobody needs, by capping the publisher's send rate.
//!
//! A publisher encodes every layer of its simulcast camera whether or not anyone watches it;
//! the top layer alone costs the publisher most of its encoding CPU and upstream bandwidth.
//! The 100ms client protocol has no message that turns one encoding off, but every browser
//! obeys a REMB from the receiver as an upper bound on its send rate, and its simulcast
//! allocator then leaves out the layers that no longer fit: Chromium stops encoding them (a
//! layer gets no bitrate below its minimum). So when the layers above some layer have been
//! unneeded by every consumer for a while (`EngineConfig::stop_unneeded_layers_after`), the router sends
//! the publisher a REMB of what the needed layers (plus audio and headroom) use, repeated
//! every [`RESEND`] because RTCP may be lost; the moment a consumer needs a stopped layer
//! again, it sends a REMB far above any real rate, a few times, and the browser's own
//! estimate takes over again. Meanwhile consumers are served the highest layer still flowing
//! (the allocation only ever picks flowing layers), and switch up on the resumed layer's
//! first keyframe.
//!
//! The delay is deliberate: a subscriber flipping between tiles must not make the publisher
//! drop and re-add its top layer, because a re-added layer needs the browser's estimate to
//! climb back, which takes seconds.
//!
//! [`cap_bps`] is a pure function of per-producer rates and needs; [`UplinkCap`] is the small
//! state machine that turns a sequence of caps into REMBs to send. The engine feeds both.

use std::time::{Duration, Instant};

use schema::layers::MAX_LAYERS;

/// How often a cap in force is sent again.
pub const RESEND: Duration = Duration::from_secs(1);
/// The REMB that lifts a cap: far above anything a publisher sends, so the browser's own
/// estimate is the only limit again.
pub const LIFTED_BPS: u64 = 100_000_000;
/// How many times a lift is sent, [`LIFT_SPACING`] apart (one lost REMB must not keep a
/// publisher capped).
pub const LIFT_SENDS: u8 = 3;
pub const LIFT_SPACING: Duration = Duration::from_millis(200);
/// Headroom on top of what the needed layers use: rates wobble with keyframes and scene
/// changes, and a cap just at the current rate would squeeze the layers that are wanted.
pub const HEADROOM_FACTOR: f64 = 1.15;
pub const HEADROOM_BPS: u64 = 64_000;

/// What one producer on the publisher's transport uses and needs, as the engine sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerUplink {
    /// Audio is never capped: its rate is only counted.
    pub audio: bool,
    /// Number of layers (1 for a plain track).
    pub layers: usize,
    /// The measured rate of each flowing layer (RTP as received); `None` = not flowing.
    pub layer_bps: [Option<u64>; MAX_LAYERS],
    /// The lowest layer from which every higher layer has gone unneeded long enough to stop;
    /// `None` when every layer is (or was recently) needed. Never 0: the lowest layer always
    /// stays, so a new subscriber starts at once.
    pub stop_from: Option<usize>,
}

/// The send rate to cap the publisher's transport at, or `None` for no cap.
///
/// A cap is worth sending only when some producer has layers to stop, and is safe only when
/// everything else on the transport is accounted for: a plain (non-simulcast) video track's
/// rate cannot be told apart from what it would need, and a needed layer that is not flowing
/// (starting, or resuming after a cap) needs room to come back, so either means no cap.
pub fn cap_bps(producers: &[ProducerUplink]) -> Option<u64> {
    if !producers.iter().any(|p| p.stop_from.is_some()) {
        return None;
    }
    let mut sum = 0u64;
    for p in producers {
        if p.audio {
            sum += p.layer_bps[..p.layers].iter().flatten().sum::<u64>();
            continue;
        }
        if p.layers < 2 {
            return None;
        }
        let keep = p.stop_from.unwrap_or(p.layers).clamp(1, p.layers);
        for rate in &p.layer_bps[..keep] {
            sum += (*rate)?;
        }
    }
    Some((sum as f64 * HEADROOM_FACTOR) as u64 + HEADROOM_BPS)
}

/// The cap in force on one publisher transport and when to send the next REMB.
#[derive(Debug, Clone, Default)]
pub struct UplinkCap {
    /// The last cap sent; `None` = no cap in force.
    applied: Option<u64>,
    next_send: Option<Instant>,
    lifts_left: u8,
}

impl UplinkCap {
    /// Takes the cap wanted now ([`cap_bps`]) and returns the REMB bitrate to send now, if any.
    pub fn poll(&mut self, now: Instant, wanted: Option<u64>) -> Option<u64> {
        let due = self.next_send.is_none_or(|t| now >= t);
        match wanted {
            Some(cap) => {
                self.lifts_left = 0;
                if self.applied.is_none() || due {
                    self.applied = Some(cap);
                    self.next_send = Some(now + RESEND);
                    return Some(cap);
                }
                None
            }
            None if self.applied.is_some() => {
                // A layer is needed again: lift at once, then repeat the lift.
                self.applied = None;
                self.lifts_left = LIFT_SENDS - 1;
                self.next_send = Some(now + LIFT_SPACING);
                Some(LIFTED_BPS)
            }
            None if self.lifts_left > 0 && due => {
                self.lifts_left -= 1;
                self.next_send = Some(now + LIFT_SPACING);
                Some(LIFTED_BPS)
            }
            None => None,
        }
    }

    /// Whether a cap is in force.
    pub fn capped(&self) -> bool {
        self.applied.is_some()
    }
}

/// When a layer counts as stoppable: how long it has gone unneeded. Kept per producer layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerNeed {
    unneeded_since: Option<Instant>,
}

impl LayerNeed {
    pub fn update(&mut self, now: Instant, needed: bool) {
        if needed {
            self.unneeded_since = None;
        } else {
            self.unneeded_since.get_or_insert(now);
        }
    }

    fn stoppable(&self, now: Instant, after: Duration) -> bool {
        self.unneeded_since.is_some_and(|since| now.saturating_duration_since(since) >= after)
    }
}

/// The lowest layer from which every higher one is stoppable (see [`ProducerUplink::stop_from`]).
/// `after` of zero disables stopping.
pub fn stop_from(now: Instant, needs: &[LayerNeed], after: Duration) -> Option<usize> {
    if after.is_zero() || needs.len() < 2 {
        return None;
    }
    let mut from = None;
    for i in (1..needs.len()).rev() {
        if needs[i].stoppable(now, after) {
            from = Some(i);
        } else {
            break;
        }
    }
    from
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(layer_bps: [Option<u64>; 3], stop_from: Option<usize>) -> ProducerUplink {
        ProducerUplink { audio: false, layers: 3, layer_bps, stop_from }
    }
    fn audio(bps: u64) -> ProducerUplink {
        ProducerUplink { audio: true, layers: 1, layer_bps: [Some(bps), None, None], stop_from: None }
    }
    const FLOWING: [Option<u64>; 3] = [Some(150_000), Some(450_000), Some(1_200_000)];

    #[test]
    fn cap_table() {
        let with_headroom = |bps: u64| Some((bps as f64 * HEADROOM_FACTOR) as u64 + HEADROOM_BPS);
        let cases: Vec<(&str, Vec<ProducerUplink>, Option<u64>)> = vec![
            ("everything needed: no cap", vec![audio(40_000), video(FLOWING, None)], None),
            ("top unneeded: q and h and audio", vec![audio(40_000), video(FLOWING, Some(2))], with_headroom(640_000)),
            ("only q needed", vec![video(FLOWING, Some(1))], with_headroom(150_000)),
            (
                "a stopped layer no longer flows: still counted as stopped",
                vec![video([Some(150_000), Some(450_000), None], Some(2))],
                with_headroom(600_000),
            ),
            (
                "a needed layer not flowing: no cap, it must come back",
                vec![video([Some(150_000), None, None], Some(2))],
                None,
            ),
            (
                "a second simulcast camera with all layers needed counts in full",
                vec![video(FLOWING, Some(1)), video(FLOWING, None)],
                with_headroom(150_000 + 1_800_000),
            ),
            (
                "a plain video track beside: cannot cap",
                vec![video(FLOWING, Some(1)), ProducerUplink { layers: 1, ..video(FLOWING, None) }],
                None,
            ),
            ("audio only: nothing to stop", vec![audio(40_000)], None),
        ];
        for (name, producers, want) in cases {
            assert_eq!(cap_bps(&producers), want, "{name}");
        }
    }

    #[test]
    fn stop_from_needs_every_higher_layer_stoppable() {
        let t0 = Instant::now();
        let after = Duration::from_secs(10);
        let mut needs = [LayerNeed::default(); 3];
        for n in &mut needs {
            n.update(t0, true);
        }
        needs[2].update(t0, false);
        assert_eq!(stop_from(t0 + Duration::from_secs(9), &needs, after), None, "not unneeded long enough");
        assert_eq!(stop_from(t0 + after, &needs, after), Some(2));
        needs[1].update(t0 + Duration::from_secs(5), false);
        assert_eq!(stop_from(t0 + after, &needs, after), Some(2), "h unneeded only 5 s");
        assert_eq!(stop_from(t0 + Duration::from_secs(15), &needs, after), Some(1));
        // h needed again while f is not: only f stops.
        needs[1].update(t0 + Duration::from_secs(16), true);
        assert_eq!(stop_from(t0 + Duration::from_secs(16), &needs, after), Some(2));
        // Layer 0 never stops, and h unneeded below a needed f does not stop either.
        let mut gap = [LayerNeed::default(); 3];
        gap[0].update(t0, false);
        gap[1].update(t0, false);
        gap[2].update(t0, true);
        assert_eq!(stop_from(t0 + Duration::from_secs(60), &gap, after), None);
        assert_eq!(stop_from(t0 + Duration::from_secs(60), &needs, Duration::ZERO), None, "disabled");
    }

    #[test]
    fn caps_are_resent_and_lifts_repeated() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut cap = UplinkCap::default();
        assert_eq!(cap.poll(ms(0), None), None, "nothing in force, nothing to lift");
        assert_eq!(cap.poll(ms(0), Some(500_000)), Some(500_000));
        assert!(cap.capped());
        assert_eq!(cap.poll(ms(100), Some(510_000)), None, "not yet due");
        assert_eq!(cap.poll(ms(1000), Some(520_000)), Some(520_000), "resent every second with the new value");
        assert_eq!(cap.poll(ms(1100), None), Some(LIFTED_BPS), "lifted at once");
        assert!(!cap.capped());
        assert_eq!(cap.poll(ms(1200), None), None);
        assert_eq!(cap.poll(ms(1300), None), Some(LIFTED_BPS));
        assert_eq!(cap.poll(ms(1500), None), Some(LIFTED_BPS));
        assert_eq!(cap.poll(ms(1700), None), None, "three lifts in all");
        assert_eq!(cap.poll(ms(5000), None), None);
        // A cap after a lift is sent at once.
        assert_eq!(cap.poll(ms(6000), Some(300_000)), Some(300_000));
    }
}
