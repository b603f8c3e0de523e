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

pub use schema::layers::MAX_LAYERS;

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

pub use schema::layers::{layer_name, parse_layer_name, rid_layer};

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

/// Width and height from an H.264 RTP payload (RFC 6184) that carries the sequence parameter
/// set: a single SPS NAL unit, or one inside a STAP-A. Keyframes from browsers start so.
pub fn h264_keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    match payload.first()? & 0x1f {
        7 => h264_sps_size(payload),
        24 => {
            // STAP-A: [header] then (16-bit size, NAL unit)*.
            let mut rest = payload.get(1..)?;
            while rest.len() > 2 {
                let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let nal = rest.get(2..2 + n)?;
                if nal.first().is_some_and(|h| h & 0x1f == 7) {
                    return h264_sps_size(nal);
                }
                rest = &rest[2 + n..];
            }
            None
        }
        _ => None,
    }
}

/// Width and height from an H.264 sequence parameter set NAL unit (ITU-T H.264 7.3.2.1.1, with
/// the frame cropping of 7.4.2.1.1). `None` for anything malformed or out of range.
pub fn h264_sps_size(nal: &[u8]) -> Option<(u16, u16)> {
    // Emulation prevention: 00 00 03 → 00 00. An SPS is short; a fixed buffer avoids allocating.
    let mut rbsp = [0u8; 256];
    let mut len = 0;
    let mut zeros = 0;
    for &b in nal.get(1..)? {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        *rbsp.get_mut(len)? = b;
        len += 1;
    }
    let mut r = BitReader { data: &rbsp[..len], pos: 0 };
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            r.bits(1)?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bits(1)? == 1 {
            // seq_scaling_matrix_present_flag: skip the lists (7.3.2.1.1.1).
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bits(1)? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bits(1)?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = u64::from(r.bits(1)?);
    if frame_mbs_only == 0 {
        r.bits(1)?; // mb_adaptive_frame_field_flag
    }
    r.bits(1)?; // direct_8x8_inference_flag
    let (mut cl, mut cr, mut ct, mut cb) = (0u64, 0u64, 0u64, 0u64);
    if r.bits(1)? == 1 {
        cl = r.ue()?.into();
        cr = r.ue()?.into();
        ct = r.ue()?.into();
        cb = r.ue()?.into();
    }
    let (sub_w, sub_h) = match chroma_format_idc {
        0 => (1, 1),
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let width = (width_mbs * 16).checked_sub((cl + cr) * sub_w)?;
    let height = ((2 - frame_mbs_only) * height_units * 16).checked_sub((ct + cb) * sub_h * (2 - frame_mbs_only))?;
    let (w, h) = (u16::try_from(width).ok()?, u16::try_from(height).ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

/// Reads bits most significant first, with the Exp-Golomb codes of H.264 9.1.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self.data.get(self.pos / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        ((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)).try_into().ok()
    }

    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
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
    fn h264_sps_size_reads_libx264_parameter_sets() {
        // SPS units libx264 wrote (ffmpeg -f lavfi -i testsrc=size=WxH -c:v libx264 -profile:v P):
        // baseline with cropping (180 = 12 × 16 − 12), high, high at 1080 (cropped from 1088),
        // and high 4:4:4.
        let cases = [
            ("6742c01fd9005005bb0110000003001000000303c0f1832480", (1280, 720)),
            ("6742c00dd901419f9f0110000003001000000303c0f142a480", (320, 180)),
            ("6764001eacd940a02ff970110000030001000003003c0f162d96", (640, 360)),
            ("67640028acd940780227e5c044000003000400000300f03c60c658", (1920, 1080)),
            ("67f4000d919b282c12d80880000003008000001e078a14cb", (352, 288)),
        ];
        for (hex, size) in cases {
            let nal: Vec<u8> =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
            assert_eq!(h264_sps_size(&nal), Some(size), "{hex}");
            assert_eq!(h264_keyframe_size(&nal), Some(size), "single NAL unit");
            // In a STAP-A after a SEI-like unit.
            let mut stap = vec![0x78, 0, 2, 0x06, 0x05];
            stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            stap.extend_from_slice(&nal);
            assert_eq!(h264_keyframe_size(&stap), Some(size), "STAP-A");
            // Every truncation fails cleanly.
            for cut in 0..nal.len() - 1 {
                let _ = h264_sps_size(&nal[..cut]);
            }
        }
        assert_eq!(h264_keyframe_size(&[0x65, 0x88, 0x84]), None, "an IDR slice has no size");
        assert_eq!(h264_keyframe_size(&[0x78, 0, 200, 0x67]), None, "a STAP-A size past the end");
        assert_eq!(h264_sps_size(&[0x67; 300]), None, "longer than any SPS");
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
