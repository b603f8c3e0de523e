//! The router's media tap, turned into a [`Composite`]'s inputs and frames.
//!
//! One [`TapFeed`] per job, fed the tap records of the job's room in order:
//!
//! ```text
//! Start        → a recorder `Track` (codec, clock rate, metadata) and an input of the job
//!                (VP8 or H.264 video, Opus audio; other codecs are ignored, with a warning),
//!                described to the job (peer, name, screenshare, muted); a later Start with
//!                other metadata describes it again
//! Rtp          → the track's ReorderBuffer → Opus packets               → push_audio
//!                                          → VP8 / H.264 depacketizer → push_video
//! SenderReport → kept by the track: its RTP time ↔ the sender's wall clock
//! Stop         → what the reorder buffer and depacketizer still hold is pushed, the input removed
//! ```
//!
//! Following a track is the recorder's code, not a copy of it (`recorder::recorder::track`):
//! the reorder windows, the depacketizers, RTP timestamp unwrapping, and for simulcast video
//! the recorder's first layer pick (the highest layer that delivers a keyframe within
//! `recorder::recorder::LAYER_PICK_MS`, or the highest with a frame by then). After that a
//! camera follows the layer its tile needs (`layers::layer_for`, among the layers that sent a
//! packet in the last [`LAYER_LIVE_MS`]): when the layout changes its tile, or its layer stops,
//! the feed asks for a keyframe, depacketizes the new layer beside the old until one comes, and
//! moves to it there, its timeline re-anchored by the wall clock (never going back). The other
//! layers' packets are dropped.
//!
//! # Time
//!
//! A frame's PTS is its RTP time on its track's timeline, placed in the job's running time:
//! the first frame of the job gets `origin` (the caller's choice: 0 for a job fed from its
//! start; [`TapFeed::live`] takes the job's running time when that frame arrives, for a job
//! whose pipeline ran before its tracks did), and each track's first frame is placed by its wall clock: the sender report's
//! mapping of its RTP time (`Track::wall_clock_of`) when the track has had one, else the
//! frame's arrival time (`now_ms`). After its first frame a track runs on its own RTP clock
//! (unwrapped past 32-bit wraps), so jitter does not reach the PTS. With sender reports on
//! both, a peer's audio and video line up as the sender captured them; without, to within
//! their arrival jitter. Not yet: re-anchoring on later sender reports (clock drift between
//! tracks over a long job), and a track that starts before the job's first frame (by its wall
//! clock) is clamped to start at `origin`.
//!
//! Time is an argument (`now_ms`, Unix milliseconds); nothing here reads the clock.

use std::collections::HashMap;
use std::time::Duration;

use recorder::depack::{Frame, Ordered};
use recorder::recorder::track::{Track, recordable};
use router_engine::rtp;
use schema::codec::Codec;
use schema::recording::TapMeta;
use schema::tap::TapRecord;
use tracing::{debug, warn};

use crate::director::InputFacts;
use crate::layers::layer_for;
use crate::pipeline::{Composite, Error, InputId, InputKind};

/// A simulcast layer counts as live while its last packet is this recent.
pub const LAYER_LIVE_MS: u64 = 1000;

/// What the job needs of a track's metadata for its layout: a screenshare's tile is named as
/// the peer's screen.
fn facts(meta: &TapMeta) -> InputFacts {
    let name = match (meta.peer_name.is_empty(), meta.is_screen()) {
        (true, _) => String::new(),
        (false, false) => meta.peer_name.clone(),
        (false, true) => format!("{} (screen)", meta.peer_name),
    };
    InputFacts { peer: meta.peer_id.clone(), name, screen: meta.is_screen(), muted: meta.muted }
}

/// Counters, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FeedStats {
    pub records: u64,
    /// Records that did not decode, starts with unreadable metadata, RTP that did not parse.
    pub bad_records: u64,
    pub packets_unknown_track: u64,
    pub lost_packets: u64,
    pub video_frames: u64,
    pub audio_packets: u64,
}

/// Where a track's timeline sits in the job: its first frame's extended RTP time and the job
/// time (ms after the job's first frame) it was placed at.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    first_ext: u64,
    job_ms: u64,
}

#[derive(Debug)]
struct Input {
    id: InputId,
    track: Track,
    anchor: Option<Anchor>,
    /// When a keyframe was last asked for.
    keyframe_asked_ms: Option<u64>,
    /// Simulcast: each layer's size (from its keyframes) and last packet (Unix ms), and the
    /// layer being moved to (followed from its first keyframe).
    sizes: std::collections::BTreeMap<u8, (u32, u32)>,
    last_packet_ms: [u64; 8],
    switch_to: Option<u8>,
    /// The last frame's PTS: a moved-to layer's timeline never starts behind it.
    last_pts: Option<Duration>,
}

/// The tap records of one room, in; a [`Composite`]'s inputs and frames, out. See the module
/// docs.
#[derive(Debug)]
pub struct TapFeed {
    inputs: HashMap<(u32, u32), Input>,
    next_id: u32,
    origin: Duration,
    /// Take `origin` from the job's running time when the first frame arrives.
    live: bool,
    /// The job's zero: the wall clock (Unix ms) of its first frame.
    zero_ms: Option<u64>,
    stats: FeedStats,
    ordered: Vec<Ordered>,
    /// Tracks waiting for a keyframe, not yet taken by [`TapFeed::take_keyframes_wanted`].
    keyframes_wanted: Vec<TapMeta>,
}

impl TapFeed {
    /// A feed whose first frame gets PTS `origin` in the job's running time.
    pub fn new(origin: Duration) -> TapFeed {
        TapFeed {
            inputs: HashMap::new(),
            next_id: 1,
            origin,
            live: false,
            zero_ms: None,
            stats: FeedStats::default(),
            keyframes_wanted: Vec::new(),
            ordered: Vec::new(),
        }
    }

    /// A feed for a job that is already running: its first frame gets the job's running time
    /// at its arrival (a frame is due when it arrives, not when the job began).
    pub fn live() -> TapFeed {
        TapFeed { live: true, ..TapFeed::new(Duration::ZERO) }
    }

    /// For a live feed, the job's zero is now: its first frame is placed at the running time.
    fn settle_origin(&mut self, job: &Composite) {
        if self.live && self.zero_ms.is_none() {
            self.origin = job.running_time().unwrap_or_default();
        }
    }

    /// The video tracks that wait for a keyframe (their start, a loss that broke a frame): the
    /// caller has the publisher asked (the tap is one-way). A track is listed again every
    /// `recorder::recorder::KEYFRAME_ASK_EVERY_MS` while it waits, as the recorder does.
    pub fn take_keyframes_wanted(&mut self) -> Vec<TapMeta> {
        std::mem::take(&mut self.keyframes_wanted)
    }

    pub fn stats(&self) -> FeedStats {
        self.stats
    }

    /// The job's input of a tapped producer, while it is fed.
    pub fn input_of(&self, tap: u32, producer: u32) -> Option<InputId> {
        self.inputs.get(&(tap, producer)).map(|i| i.id)
    }

    /// The simulcast layer followed for a tapped producer, once picked.
    pub fn layer_of(&self, tap: u32, producer: u32) -> Option<u8> {
        self.inputs.get(&(tap, producer)).and_then(|i| i.track.layer)
    }

    /// One encoded tap record, received at `now_ms` (Unix ms). Bad records are counted, not
    /// errors; an error is the job refusing an input or a frame.
    pub fn handle_record(&mut self, now_ms: u64, record: &[u8], job: &mut Composite) -> Result<(), Error> {
        self.stats.records += 1;
        let rec = match TapRecord::decode(record) {
            Ok(r) => r,
            Err(e) => {
                self.stats.bad_records += 1;
                warn!(error = %e, "bad tap record");
                return Ok(());
            }
        };
        match rec {
            TapRecord::Start { tap, producer, codec, clock_rate, meta } => {
                self.start(tap, producer, codec, clock_rate, meta, job)
            }
            TapRecord::Rtp { tap, producer, layer, packet } => self.packet(now_ms, (tap, producer), layer, packet, job),
            TapRecord::SenderReport { tap, producer, layer, ntp, rtp_time } => {
                if let Some(i) = self.inputs.get_mut(&(tap, producer)) {
                    i.track.sr.insert(layer, (ntp, rtp_time));
                }
                Ok(())
            }
            TapRecord::Stop { tap, producer } => self.stop((tap, producer), now_ms, job),
        }
    }

    /// Ends every input (the job goes on without them): what is still held is pushed first.
    pub fn stop_all(&mut self, now_ms: u64, job: &mut Composite) -> Result<(), Error> {
        let mut keys: Vec<_> = self.inputs.keys().copied().collect();
        keys.sort_unstable();
        keys.into_iter().try_for_each(|k| self.stop(k, now_ms, job))
    }

    /// Pushes what every input still holds and leaves the inputs in the job: for a job about
    /// to finish, whose `finish` ends them all at once. Removing them one by one instead would
    /// lay the last tiles out again as each left, in the recording's last frames, and a
    /// removal tears a branch down while it may still be pushing.
    pub fn flush_all(&mut self, now_ms: u64, job: &mut Composite) -> Result<(), Error> {
        let mut keys: Vec<_> = self.inputs.keys().copied().collect();
        keys.sort_unstable();
        // Every input's frames, even past one that was refused: the first refusal is returned.
        let mut first = Ok(());
        for k in keys {
            let pushed = self.flush(k, now_ms, job);
            first = first.and(pushed);
        }
        first
    }

    fn start(
        &mut self,
        tap: u32,
        producer: u32,
        codec: Codec,
        clock_rate: u32,
        meta: &str,
        job: &mut Composite,
    ) -> Result<(), Error> {
        let meta: TapMeta = match serde_json::from_str(meta) {
            Ok(m) => m,
            Err(e) => {
                self.stats.bad_records += 1;
                warn!(tap, producer, error = %e, "tap start with unreadable metadata; track ignored");
                return Ok(());
            }
        };
        // The router repeats a tap's Start every second, and at once when signaling re-sends
        // its metadata (a mute, a new name): only a change is news.
        if let Some(input) = self.inputs.get_mut(&(tap, producer)) {
            if input.track.meta != meta {
                debug!(tap, producer, track = %meta.track_id, muted = meta.muted, "tapped track described again");
                job.describe_input(input.id, facts(&meta))?;
                input.track.meta = meta;
            }
            return Ok(());
        }
        let kind = match codec {
            Codec::Opus => InputKind::Opus,
            Codec::Vp8 => InputKind::Vp8,
            Codec::H264 => InputKind::H264,
            Codec::Vp9 => {
                warn!(tap, producer, track = %meta.track_id, "VP9 is not composited; track ignored");
                return Ok(());
            }
        };
        if recordable(codec).is_none() || clock_rate == 0 {
            warn!(tap, producer, ?codec, clock_rate, "track cannot be followed; ignored");
            return Ok(());
        }
        let id = InputId(self.next_id);
        job.add_input(id, kind)?;
        self.next_id += 1;
        job.describe_input(id, facts(&meta))?;
        debug!(tap, producer, track = %meta.track_id, %id, ?kind, "tapped track joins the job");
        self.inputs.insert(
            (tap, producer),
            Input {
                id,
                track: Track::new(meta, codec, clock_rate),
                anchor: None,
                keyframe_asked_ms: None,
                sizes: std::collections::BTreeMap::new(),
                last_packet_ms: [0; 8],
                switch_to: None,
                last_pts: None,
            },
        );
        Ok(())
    }

    fn packet(
        &mut self,
        now_ms: u64,
        key: (u32, u32),
        layer: u8,
        packet: &[u8],
        job: &mut Composite,
    ) -> Result<(), Error> {
        let Some(input) = self.inputs.get_mut(&key) else {
            self.stats.packets_unknown_track += 1;
            return Ok(());
        };
        let Ok(h) = rtp::parse(packet) else {
            self.stats.bad_records += 1;
            return Ok(());
        };
        let payload = &packet[h.header_len..h.header_len + h.payload_len];
        if payload.is_empty() {
            return Ok(()); // padding-only (bandwidth probes)
        }
        input.track.note_packet(now_ms, layer);
        input.last_packet_ms[usize::from(layer.min(7))] = now_ms;
        if input.track.layer.is_some_and(|l| l != layer) && input.switch_to != Some(layer) {
            return Ok(()); // a simulcast layer not followed
        }
        let codec = input.track.codec;
        let mut ordered = std::mem::take(&mut self.ordered);
        ordered.clear();
        let pipe = input.track.pipe(layer);
        let lost_before = pipe.reorder.lost;
        pipe.reorder.push(h.sequence_number, h.timestamp, h.marker, payload, &mut ordered);
        self.stats.lost_packets += pipe.reorder.lost - lost_before;
        let result = if codec == Codec::Opus {
            self.audio(key, now_ms, &ordered, job)
        } else {
            let mut frames = Vec::new();
            for p in &ordered {
                pipe.video.push(p, &mut frames);
            }
            if let Some((w, h)) = frames.iter().rev().find(|f| f.keyframe).and_then(|f| f.size) {
                input.sizes.insert(layer, (u32::from(w), u32::from(h)));
            }
            match input.track.layer {
                None => frames = input.track.pick_layer(now_ms, layer, frames).unwrap_or_default(),
                Some(followed) if followed != layer => frames = move_on_keyframe(input, layer, frames),
                Some(_) => {}
            }
            self.video(key, now_ms, frames, job)
        };
        // Whether a track waits for a keyframe is only known at a frame's end: before its
        // marker, a keyframe's first packets leave the depacketizer still waiting, and asking
        // then would have every camera that starts on a keyframe send a second one.
        let frame_ended = ordered.iter().any(|p| p.marker);
        self.ordered = ordered;
        if codec != Codec::Opus && frame_ended {
            self.ask_keyframe_if_waiting(now_ms, key);
            self.follow_tile(now_ms, key, job);
        }
        result
    }

    /// Picks the layer the input's tile needs now, and starts moving to it (asking for its
    /// keyframe) when it is not the one followed. See the module docs.
    fn follow_tile(&mut self, now_ms: u64, key: (u32, u32), job: &Composite) {
        let Some(input) = self.inputs.get_mut(&key) else { return };
        let Some(followed) = input.track.layer else { return };
        let Some(tile) = job.tile_size(input.id) else { return };
        let live = (0..8u8)
            .filter(|&l| input.track.layers_seen & (1 << l) != 0)
            .filter(|&l| now_ms.saturating_sub(input.last_packet_ms[usize::from(l)]) < LAYER_LIVE_MS)
            .fold(0u8, |bits, l| bits | 1 << l);
        let want = layer_for(tile, live, &input.sizes).unwrap_or(followed);
        if want == followed {
            if input.switch_to.take().is_some() {
                input.track.pipes.retain(|&l, _| l == followed);
            }
            return;
        }
        if input.switch_to == Some(want) {
            // Asked again while it waits: the router throttles keyframe requests (a tap's own
            // start asks too), and a browser sends none unasked.
            let due = input.keyframe_asked_ms.is_none_or(|at| now_ms >= at + recorder::recorder::KEYFRAME_ASK_EVERY_MS);
            if due {
                input.keyframe_asked_ms = Some(now_ms);
                self.keyframes_wanted.push(input.track.meta.clone());
            }
            return;
        }
        debug!(track = %input.track.meta.track_id, from = followed, to = want, ?tile, "moving to the simulcast layer the tile needs");
        input.track.pipes.retain(|&l, _| l == followed);
        input.switch_to = Some(want);
        input.keyframe_asked_ms = Some(now_ms);
        self.keyframes_wanted.push(input.track.meta.clone());
    }

    fn ask_keyframe_if_waiting(&mut self, now_ms: u64, key: (u32, u32)) {
        let Some(input) = self.inputs.get_mut(&key) else { return };
        let t = &input.track;
        let waiting = match t.layer {
            Some(l) => t.pipes.get(&l).is_some_and(|p| p.video.waiting_for_keyframe()),
            None => t.pipes.values().all(|p| p.video.waiting_for_keyframe()),
        };
        if waiting && input.keyframe_asked_ms.is_none_or(|at| now_ms >= at + recorder::recorder::KEYFRAME_ASK_EVERY_MS)
        {
            input.keyframe_asked_ms = Some(now_ms);
            debug!(track = %t.meta.track_id, "keyframe wanted");
            self.keyframes_wanted.push(t.meta.clone());
        }
    }

    fn audio(&mut self, key: (u32, u32), now_ms: u64, packets: &[Ordered], job: &mut Composite) -> Result<(), Error> {
        self.settle_origin(job);
        let Some(input) = self.inputs.get_mut(&key) else { return Ok(()) };
        for p in packets {
            let pts = place(&mut self.zero_ms, self.origin, input, now_ms, 0, p.timestamp);
            job.push_audio(input.id, p.payload.clone(), pts)?;
            self.stats.audio_packets += 1;
        }
        Ok(())
    }

    fn video(&mut self, key: (u32, u32), now_ms: u64, frames: Vec<Frame>, job: &mut Composite) -> Result<(), Error> {
        if !frames.is_empty() {
            self.settle_origin(job);
        }
        let Some(input) = self.inputs.get_mut(&key) else { return Ok(()) };
        let Some(layer) = input.track.layer else { return Ok(()) };
        for f in frames {
            let mut pts = place(&mut self.zero_ms, self.origin, input, now_ms, layer, f.timestamp);
            if let Some(last) = input.last_pts
                && pts <= last
            {
                // A moved-to layer's timeline, anchored by the wall clock, may start a little
                // behind the old one's: it is moved on, never back.
                let behind = last - pts + Duration::from_millis(1);
                if let Some(a) = &mut input.anchor {
                    a.job_ms += u64::try_from(behind.as_millis()).unwrap_or(0);
                }
                pts += behind;
            }
            input.last_pts = Some(pts);
            let data = if input.track.codec == Codec::H264 { annex_b(&f) } else { f.data };
            job.push_video(input.id, data, pts, f.keyframe)?;
            self.stats.video_frames += 1;
        }
        Ok(())
    }

    fn stop(&mut self, key: (u32, u32), now_ms: u64, job: &mut Composite) -> Result<(), Error> {
        let pushed = self.flush(key, now_ms, job);
        // The input leaves the job even if its last frames were refused.
        let Some(input) = self.inputs.remove(&key) else { return pushed };
        debug!(track = %input.track.meta.track_id, id = %input.id, "tapped track leaves the job");
        pushed.and(job.remove_input(input.id))
    }

    /// Pushes what an input's reorder buffer and depacketizer hold.
    fn flush(&mut self, key: (u32, u32), now_ms: u64, job: &mut Composite) -> Result<(), Error> {
        let Some(input) = self.inputs.get_mut(&key) else { return Ok(()) };
        // The followed layer's alone: a layer being moved to has not started.
        let mut rest = Vec::new();
        if let Some(l) = input.track.layer
            && let Some(pipe) = input.track.pipes.get_mut(&l)
        {
            pipe.reorder.flush(&mut rest);
        }
        if input.track.codec == Codec::Opus {
            self.audio(key, now_ms, &rest, job)
        } else {
            let mut frames = Vec::new();
            if let Some(l) = input.track.layer
                && let Some(pipe) = input.track.pipes.get_mut(&l)
            {
                for p in &rest {
                    pipe.video.push(p, &mut frames);
                }
                pipe.video.flush(&mut frames);
            }
            self.video(key, now_ms, frames, job)
        }
    }
}

/// The frames of the layer an input is moving to, from its first keyframe on; the input
/// follows that layer from there, on a new timeline. Before that keyframe, none.
fn move_on_keyframe(input: &mut Input, layer: u8, mut frames: Vec<Frame>) -> Vec<Frame> {
    let Some(k) = frames.iter().position(|f| f.keyframe) else { return Vec::new() };
    debug!(track = %input.track.meta.track_id, from = ?input.track.layer, to = layer, "simulcast layer moved to");
    input.track.layer = Some(layer);
    input.track.pipes.retain(|&l, _| l == layer);
    input.track.restart_timeline();
    input.switch_to = None;
    input.anchor = None;
    frames.split_off(k)
}

/// The PTS of RTP time `ts` of `input`'s followed layer. See the module docs ("Time").
fn place(zero_ms: &mut Option<u64>, origin: Duration, input: &mut Input, now_ms: u64, layer: u8, ts: u32) -> Duration {
    let ext = input.track.unwrap_ts(ts);
    let anchor = match input.anchor {
        Some(a) => a,
        None => {
            let wall = input.track.wall_clock_of(layer, ts).unwrap_or(now_ms);
            let zero = *zero_ms.get_or_insert(wall);
            let a = Anchor { first_ext: ext, job_ms: wall.saturating_sub(zero) };
            input.anchor = Some(a);
            a
        }
    };
    // `clock_rate` is at least 1 (Track::new).
    let ticks = ext.saturating_sub(anchor.first_ext);
    let since_first = Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / u64::from(input.track.clock_rate));
    origin + Duration::from_millis(anchor.job_ms) + since_first
}

/// An H.264 access unit as the depacketizer gives it (4-byte length-prefixed NAL units, the
/// parameter sets apart) in the Annex B form the job's parser takes: start codes, and the SPS
/// and PPS before a keyframe. A length running past the end stops the conversion there.
fn annex_b(frame: &Frame) -> Vec<u8> {
    const START: [u8; 4] = [0, 0, 0, 1];
    let mut out = Vec::with_capacity(frame.data.len() + 64);
    if let Some(p) = &frame.params {
        for nal in [&p.sps, &p.pps] {
            out.extend_from_slice(&START);
            out.extend_from_slice(nal);
        }
    }
    let mut rest = frame.data.as_slice();
    while let Some((len, body)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        let Some(nal) = body.get(..len) else { break };
        out.extend_from_slice(&START);
        out.extend_from_slice(nal);
        rest = &body[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use recorder::depack::ParamSets;

    #[test]
    fn annex_b_puts_parameter_sets_first_and_start_codes_between() {
        let frame = Frame {
            timestamp: 0,
            keyframe: true,
            data: vec![0, 0, 0, 2, 0x65, 0xaa, 0, 0, 0, 1, 0x06],
            size: None,
            params: Some(ParamSets { sps: vec![0x67, 1], pps: vec![0x68, 2] }),
        };
        assert_eq!(
            annex_b(&frame),
            [0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2, 0, 0, 0, 1, 0x65, 0xaa, 0, 0, 0, 1, 0x06]
        );
        // A truncated length ends the unit without a panic.
        let cut = Frame { data: vec![0, 0, 0, 9, 0x41], params: None, ..frame };
        assert!(annex_b(&cut).is_empty());
    }
}
