//! Simulcast forwarding: which layer a consumer gets, when it may switch, and how the switched
//! stream is made to look like one continuous stream. Pure functions and small meters; the
//! engine calls them on every packet and tick (see `docs/simulcast.md`).
//!
//! A simulcast producer has up to [`MAX_LAYERS`] spatial layers, index 0 the lowest (rid `q`),
//! each its own RTP stream (own SSRC, sequence numbers and timestamps). A video consumer keeps
//! three layers, as in mediasoup's SimulcastConsumer and LiveKit's Forwarder:
//! - `preferred`: the highest layer the subscriber asked for (`prefer-video-track-state`),
//! - `target`: what the bandwidth allocation grants (never above `preferred`),
//! - `current`: what is forwarded now.
//!
//! [`decide`] looks at one packet and says drop, forward, or switch `current` to `target` here.
//! A switch only happens on the first packet of a keyframe of the target layer, since the
//! subscriber's decoder cannot start a new stream anywhere else; until that keyframe comes the
//! consumer keeps forwarding its current layer, and the engine asks the publisher for one.
//!
//! ```
//! use router_engine::simulcast::{decide, LayerDecision, LayerState};
//! let s = LayerState { preferred: Some(2), target: Some(2), current: Some(0) };
//! assert_eq!(decide(&s, 0, false), LayerDecision::Forward); // keep the old layer meanwhile
//! assert_eq!(decide(&s, 2, false), LayerDecision::Drop); // not a keyframe: cannot switch yet
//! assert_eq!(decide(&s, 2, true), LayerDecision::Switch { from: Some(0), to: 2 });
//! ```

use std::time::{Duration, Instant};

/// Spatial layers a producer can have (`q`, `h`, `f`).
pub const MAX_LAYERS: usize = 3;

/// The layers of one video consumer. `None` means no layer (nothing forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerState {
    pub preferred: Option<u8>,
    pub target: Option<u8>,
    pub current: Option<u8>,
}

/// What to do with one packet of a producer's layer, for one consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerDecision {
    /// Not for this consumer (another layer, or a layer it is leaving or cannot enter yet).
    Drop,
    /// The consumer's current layer: forward with the current numbering.
    Forward,
    /// The first packet of a keyframe of the target layer: `current` becomes `to`, the
    /// numbering continues from the last packet sent, and this packet is forwarded.
    Switch { from: Option<u8>, to: u8 },
}

/// The decision for a packet of `layer`; `keyframe_start` is true for the first packet of a
/// keyframe (the only place a decoder can join a stream).
pub fn decide(state: &LayerState, layer: u8, keyframe_start: bool) -> LayerDecision {
    match state.target {
        // Paused by the allocation or the subscriber: nothing, whatever the layer.
        None => LayerDecision::Drop,
        Some(target) if state.current == Some(target) => {
            if layer == target {
                LayerDecision::Forward
            } else {
                LayerDecision::Drop
            }
        }
        Some(target) => {
            if layer == target && keyframe_start {
                LayerDecision::Switch { from: state.current, to: target }
            } else if state.current == Some(layer) {
                LayerDecision::Forward
            } else {
                LayerDecision::Drop
            }
        }
    }
}

/// The 100ms SDK's names of layers (`HMSSimulcastLayer`): 0 `low`, 1 `medium`, 2 `high`.
pub fn layer_name(layer: Option<u8>) -> &'static str {
    match layer {
        None => "none",
        Some(0) => "low",
        Some(1) => "medium",
        Some(_) => "high",
    }
}

/// The layer index of an SDK layer name; `Some(None)` for `none`, `None` for an unknown name.
pub fn parse_layer_name(name: &str) -> Option<Option<u8>> {
    match name {
        "none" => Some(None),
        "low" => Some(Some(0)),
        "medium" => Some(Some(1)),
        "high" => Some(Some(2)),
        _ => None,
    }
}

/// The spatial index of a 100ms rid (`q` low, `h` medium, `f` high).
pub fn rid_layer(rid: &str) -> Option<u8> {
    match rid {
        "q" => Some(0),
        "h" => Some(1),
        "f" => Some(2),
        _ => None,
    }
}

/// Width and height from the first packet of a VP8 keyframe (RFC 6386 9.1: after the frame
/// tag and start code, 14-bit little-endian width and height, each with a 2-bit scale).
/// `vp8_payload` starts after the RTP payload descriptor.
pub fn vp8_keyframe_size(vp8_payload: &[u8]) -> Option<(u16, u16)> {
    let h = vp8_payload.get(0..10)?;
    if h[0] & 0x01 != 0 || h[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([h[6], h[7]]) & 0x3fff;
    let ht = u16::from_le_bytes([h[8], h[9]]) & 0x3fff;
    (w > 0 && ht > 0).then_some((w, ht))
}

/// A stream's bit rate over the last second, in four 250 ms buckets: smooth enough for the
/// allocation (a keyframe does not make a layer look three times its size) and quick enough
/// that a layer that stops is seen within a second.
#[derive(Debug, Clone)]
pub struct RateMeter {
    buckets: [u64; 4],
    bucket: usize,
    bucket_start: Option<Instant>,
    last_packet: Option<Instant>,
}

const BUCKET: Duration = Duration::from_millis(250);
/// A layer with no packet for this long is not flowing (stopped by the publisher, or never
/// started): the allocation will not pick it.
pub const LAYER_IDLE: Duration = Duration::from_millis(1500);

impl Default for RateMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateMeter {
    pub fn new() -> Self {
        RateMeter { buckets: [0; 4], bucket: 0, bucket_start: None, last_packet: None }
    }

    fn advance(&mut self, now: Instant) {
        let start = *self.bucket_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        let steps = (elapsed.as_millis() / BUCKET.as_millis()) as usize;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(4) {
            self.bucket = (self.bucket + 1) % 4;
            self.buckets[self.bucket] = 0;
        }
        self.bucket_start = Some(start + BUCKET * steps as u32);
    }

    pub fn on_packet(&mut self, now: Instant, bytes: usize) {
        self.advance(now);
        self.buckets[self.bucket] += bytes as u64;
        self.last_packet = Some(now);
    }

    /// Bits per second over the last second, or `None` when the stream is not flowing.
    pub fn rate_bps(&mut self, now: Instant) -> Option<u64> {
        self.advance(now);
        let last = self.last_packet?;
        if now.saturating_duration_since(last) > LAYER_IDLE {
            return None;
        }
        // The current bucket is partly filled: count the three full ones and the part.
        let full: u64 = (0..4).filter(|&i| i != self.bucket).map(|i| self.buckets[i]).sum();
        let part = self.buckets[self.bucket];
        let part_ms = self
            .bucket_start
            .map_or(0, |s| now.saturating_duration_since(s).as_millis() as u64)
            .min(BUCKET.as_millis() as u64);
        let span_ms = 750 + part_ms.max(1);
        Some((full + part) * 8 * 1000 / span_ms)
    }
}

/// A speaker's level from the ssrc-audio-level extension (RFC 6464: 0 is 0 dBov, the loudest,
/// 127 is -127 dBov, silence), smoothed so one loud packet does not make a speaker and a
/// pause between words does not unmake one.
#[derive(Debug, Clone, Default)]
pub struct AudioLevelMeter {
    /// Smoothed loudness, 0 (silence) to 127 (0 dBov).
    smoothed: f32,
    last: Option<Instant>,
}

/// Below this loudness (-70 dBov) a producer is silent.
const SILENCE: f32 = 127.0 - 70.0;

impl AudioLevelMeter {
    /// One packet's level: the extension's byte (V bit and the 7-bit level).
    pub fn on_level(&mut self, now: Instant, ext_byte: u8) {
        let loudness = 127.0 - f32::from(ext_byte & 0x7f);
        if self.last.is_none() {
            self.smoothed = loudness;
        }
        // Rise fast (a new speaker is heard at once), fall slowly (over about a second).
        let alpha = if loudness > self.smoothed { 0.3 } else { 0.02 };
        self.smoothed += alpha * (loudness - self.smoothed);
        self.last = Some(now);
    }

    /// The level for the SDK (`active-speakers` `level`, 0–100), or `None` when silent or when
    /// no packet came for a second (DTX, muted).
    pub fn level(&self, now: Instant) -> Option<u8> {
        let last = self.last?;
        if now.saturating_duration_since(last) > Duration::from_secs(1) || self.smoothed < SILENCE {
            return None;
        }
        Some((((self.smoothed - SILENCE) / (127.0 - SILENCE)) * 100.0).clamp(1.0, 100.0) as u8)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every case of the decision: (preferred, target, current), packet layer, keyframe start,
    /// and the expected decision.
    #[test]
    fn decision_table() {
        use LayerDecision::*;
        let s = |t: Option<u8>, c: Option<u8>| LayerState { preferred: Some(2), target: t, current: c };
        #[rustfmt::skip]
        let table: &[(LayerState, u8, bool, LayerDecision)] = &[
            // Steady on a layer: its packets pass, the others do not.
            (s(Some(1), Some(1)), 1, false, Forward),
            (s(Some(1), Some(1)), 1, true, Forward),
            (s(Some(1), Some(1)), 0, true, Drop),
            (s(Some(1), Some(1)), 2, true, Drop),
            // Upgrade pending: keep the current layer until the target's keyframe.
            (s(Some(2), Some(0)), 0, false, Forward),
            (s(Some(2), Some(0)), 2, false, Drop),
            (s(Some(2), Some(0)), 2, true, Switch { from: Some(0), to: 2 }),
            // A keyframe of a layer between current and target is not the target: no switch.
            (s(Some(2), Some(0)), 1, true, Drop),
            // Downgrade pending: same rule.
            (s(Some(0), Some(2)), 2, false, Forward),
            (s(Some(0), Some(2)), 0, false, Drop),
            (s(Some(0), Some(2)), 0, true, Switch { from: Some(2), to: 0 }),
            // Starting: nothing until the target's keyframe.
            (s(Some(1), None), 1, false, Drop),
            (s(Some(1), None), 0, true, Drop),
            (s(Some(1), None), 1, true, Switch { from: None, to: 1 }),
            // Paused: nothing at all.
            (s(None, Some(1)), 1, true, Drop),
            (s(None, None), 0, true, Drop),
        ];
        for (i, (state, layer, key, want)) in table.iter().enumerate() {
            assert_eq!(decide(state, *layer, *key), *want, "row {i}: {state:?} layer {layer} key {key}");
        }
    }

    #[test]
    fn layer_names_round_trip_and_unknown_names_are_refused() {
        for l in [None, Some(0), Some(1), Some(2)] {
            assert_eq!(parse_layer_name(layer_name(l)), Some(l));
        }
        assert_eq!(parse_layer_name("ultra"), None);
        assert_eq!(rid_layer("q"), Some(0));
        assert_eq!(rid_layer("f"), Some(2));
        assert_eq!(rid_layer("x"), None);
    }

    #[test]
    fn vp8_keyframe_size_reads_the_frame_header() {
        // Frame tag (key frame), start code, 1280 (0x500) and 720 (0x2d0) little-endian.
        let kf = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02];
        assert_eq!(vp8_keyframe_size(&kf), Some((1280, 720)));
        // Scale bits are masked off.
        let scaled = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x41, 0x40, 0xc0];
        assert_eq!(vp8_keyframe_size(&scaled), Some((320, 64)));
        let mut delta = kf;
        delta[0] |= 1;
        assert_eq!(vp8_keyframe_size(&delta), None);
        assert_eq!(vp8_keyframe_size(&kf[..9]), None);
        let mut bad_code = kf;
        bad_code[4] = 0;
        assert_eq!(vp8_keyframe_size(&bad_code), None);
    }

    #[test]
    fn rate_meter_measures_and_sees_a_stopped_stream() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        assert_eq!(m.rate_bps(t0), None);
        // 100 packets of 1000 bytes a second: 800 kbit/s.
        for i in 0..300u32 {
            m.on_packet(t0 + Duration::from_millis(10 * u64::from(i)), 1000);
        }
        let at = t0 + Duration::from_millis(2995);
        let r = m.rate_bps(at).unwrap();
        assert!((720_000..=880_000).contains(&r), "{r}");
        assert_eq!(m.rate_bps(at + LAYER_IDLE + Duration::from_millis(10)), None);
        // Restarting counts only the new packets.
        let later = at + Duration::from_secs(5);
        m.on_packet(later, 1000);
        assert!(m.rate_bps(later).unwrap() < 20_000);
    }

    #[test]
    fn audio_level_rises_fast_falls_slowly_and_silence_is_none() {
        let t0 = Instant::now();
        let mut m = AudioLevelMeter::default();
        assert_eq!(m.level(t0), None);
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // -20 dBov speech for 200 ms (packets every 20 ms).
        for i in 0..10 {
            m.on_level(ms(20 * i), 20);
        }
        let speaking = m.level(ms(200)).unwrap();
        assert!(speaking > 60, "{speaking}");
        // Then silence (-127 dBov): still a speaker 200 ms later, not after 3 s.
        for i in 10..20 {
            m.on_level(ms(20 * i), 127);
        }
        assert!(m.level(ms(400)).is_some());
        for i in 20..170 {
            m.on_level(ms(20 * i), 127);
        }
        assert_eq!(m.level(ms(3400)), None);
        // No packets for over a second (muted or DTX): not speaking.
        let mut n = AudioLevelMeter::default();
        n.on_level(t0, 10);
        assert!(n.level(t0).is_some());
        assert_eq!(n.level(ms(1500)), None);
    }
}
