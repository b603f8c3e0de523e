//! One tapped track: what it is, its per-layer pipelines (reorder, depacketize), which
//! simulcast layer it records, and its RTP and wall-clock time.
//!
//! Public because the compositor follows a tapped track the same way (its `tap_feed`): the
//! pipelines, the layer pick and the timing are used from there; the file-writing state (the
//! part, rotation, the manifest's announcements) stays private to the recorder.

use std::collections::HashMap;

use schema::codec::Codec;
use schema::recording::TapMeta;
use tracing::debug;

use super::LAYER_PICK_MS;
use super::part::Part;
use crate::depack::{Frame, H264Depacketizer, ParamSets, ReorderBuffer, VideoDepacketizer, Vp8Depacketizer};

/// Reorder windows (packets): ~100 ms of video at 1 Mbit/s, ~200 ms of audio.
const VIDEO_WINDOW: u64 = 64;
const AUDIO_WINDOW: u64 = 10;

/// Frames a layer holds at most while the layer is being picked (a few seconds' worth).
const MAX_HELD: usize = 300;

/// The codecs written, and how: the manifest's codec name and the file extension.
pub fn recordable(codec: Codec) -> Option<(&'static str, &'static str)> {
    match codec {
        Codec::Opus => Some(("opus", "ogg")),
        Codec::Vp8 => Some(("vp8", "webm")),
        Codec::H264 => Some(("h264", "mp4")),
        Codec::Vp9 => None,
    }
}

/// One simulcast layer's pipeline.
#[derive(Debug)]
pub struct LayerPipe {
    pub reorder: ReorderBuffer,
    pub video: VideoDepacketizer,
    /// Frames held while the layer is still being picked.
    pub held: Vec<Frame>,
}

/// One tapped track (keyed by tap and producer by its user).
pub struct Track {
    pub meta: TapMeta,
    pub codec: Codec,
    pub clock_rate: u32,
    pub first_packet_ms: u64,
    /// Layers seen so far (bit per layer).
    pub layers_seen: u8,
    pub pipes: HashMap<u8, LayerPipe>,
    pub layer: Option<u8>,
    /// RTP timestamp unwrapping (of the recorded layer).
    ts_high: Option<u64>,
    /// The last sender report of the recorded layer: (NTP, RTP time).
    pub sr: HashMap<u8, (u64, u32)>,
    pub(super) part: Option<Part>,
    pub(super) rotate_due: bool,
    pub(super) size: Option<(u16, u16)>,
    /// H.264: the parameter sets of the last keyframe.
    pub(super) params: Option<ParamSets>,
    /// `TrackStarted` was reported.
    pub(super) announced: bool,
    /// When `KeyframeWanted` was last reported.
    pub(super) keyframe_asked_ms: Option<u64>,
}

impl std::fmt::Debug for Track {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Track")
            .field("track", &self.meta.track_id)
            .field("codec", &self.codec)
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl Track {
    pub fn new(meta: TapMeta, codec: Codec, clock_rate: u32) -> Track {
        Track {
            meta,
            codec,
            clock_rate: clock_rate.max(1),
            first_packet_ms: 0,
            layers_seen: 0,
            pipes: HashMap::new(),
            layer: (codec == Codec::Opus).then_some(0),
            ts_high: None,
            sr: HashMap::new(),
            part: None,
            rotate_due: false,
            size: None,
            params: None,
            announced: false,
            keyframe_asked_ms: None,
        }
    }

    /// The manifest's name of the codec ("" if it is not written).
    pub fn codec_name(&self) -> &'static str {
        recordable(self.codec).map_or("", |c| c.0)
    }

    /// Notes a packet with a payload on `layer`, received at `now_ms`: the layer pick's clock
    /// starts at the first, and the layers seen are what it picks from.
    pub fn note_packet(&mut self, now_ms: u64, layer: u8) {
        if self.layers_seen == 0 {
            self.first_packet_ms = now_ms;
        }
        self.layers_seen |= 1 << layer.min(7);
    }

    /// The pipeline of `layer`, made on its first packet.
    pub fn pipe(&mut self, layer: u8) -> &mut LayerPipe {
        let codec = self.codec;
        let window = if codec == Codec::Opus { AUDIO_WINDOW } else { VIDEO_WINDOW };
        self.pipes.entry(layer).or_insert_with(|| LayerPipe {
            reorder: ReorderBuffer::new(window),
            video: if codec == Codec::H264 {
                VideoDepacketizer::H264(H264Depacketizer::new())
            } else {
                VideoDepacketizer::Vp8(Vp8Depacketizer::new())
            },
            held: Vec::new(),
        })
    }

    /// While no layer is recorded yet: holds `frames` of `layer`, and picks the layer once the
    /// top one seen has a frame or [`LAYER_PICK_MS`] have passed with any. Returns the picked
    /// layer's held frames, to write, when it picks.
    pub fn pick_layer(&mut self, now_ms: u64, layer: u8, frames: Vec<Frame>) -> Option<Vec<Frame>> {
        let pipe = self.pipes.get_mut(&layer)?;
        pipe.held.extend(frames);
        let top = 7 - self.layers_seen.leading_zeros() as u8;
        let elapsed = now_ms.saturating_sub(self.first_packet_ms);
        let ready = |l: u8| self.pipes.get(&l).is_some_and(|p| !p.held.is_empty());
        let pick = if ready(top) {
            Some(top)
        } else if elapsed >= LAYER_PICK_MS {
            (0..=top).rev().find(|&l| ready(l))
        } else {
            None
        };
        let Some(pick) = pick else {
            // Bound what is held: drop the oldest.
            for p in self.pipes.values_mut() {
                if p.held.len() > MAX_HELD {
                    p.held.drain(..p.held.len() - MAX_HELD);
                }
            }
            return None;
        };
        debug!(track = %self.meta.track_id, layer = pick, "recording layer chosen");
        self.layer = Some(pick);
        let held = self.pipes.get_mut(&pick).map(|p| std::mem::take(&mut p.held)).unwrap_or_default();
        self.pipes.retain(|&l, _| l == pick);
        Some(held)
    }

    /// Extends an RTP timestamp of the recorded layer past its 32-bit wraps.
    pub fn unwrap_ts(&mut self, ts: u32) -> u64 {
        let ext = match self.ts_high {
            None => (1u64 << 32) + u64::from(ts),
            Some(h) => {
                let delta = ts.wrapping_sub(h as u32) as i32;
                (h as i64 + i64::from(delta)).max(0) as u64
            }
        };
        self.ts_high = Some(self.ts_high.map_or(ext, |h| h.max(ext)));
        ext
    }

    /// Forgets the unwrapping state: the next timestamp starts a new timeline (a follower
    /// that moved to another simulcast layer, whose RTP clock has its own offset).
    pub fn restart_timeline(&mut self) {
        self.ts_high = None;
    }

    /// The wall-clock time of RTP time `ts` on `layer`, from the last sender report.
    pub fn wall_clock_of(&self, layer: u8, ts: u32) -> Option<u64> {
        let &(ntp, rtp_time) = self.sr.get(&layer)?;
        let delta = ts.wrapping_sub(rtp_time) as i32;
        let ms = ntp_to_unix_ms(ntp) as i64 + i64::from(delta) * 1000 / i64::from(self.clock_rate);
        u64::try_from(ms).ok()
    }
}

/// NTP (32.32 fixed point since 1900) to Unix milliseconds.
pub fn ntp_to_unix_ms(ntp: u64) -> u64 {
    const EPOCH_DELTA: u64 = 2_208_988_800;
    let secs = (ntp >> 32).saturating_sub(EPOCH_DELTA);
    let frac = ((ntp & 0xffff_ffff) * 1000) >> 32;
    secs * 1000 + frac
}
