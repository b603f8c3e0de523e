//! The recorder's core: tap records in, files and [`RecorderEvent`]s out.
//!
//! Tracks are keyed by (tap, producer). A track is created by its `Start` record (repeated by
//! the router every second, so a restarted recorder picks every track up again); packets of
//! a track not yet started are dropped and counted. Each track writes numbered parts under
//! `<dir>/<recording_id>/<peer_id>/<track_id>.<part>.<ext>`, and each recording keeps a
//! `manifest.json` beside them, rewritten (write then rename) whenever a part opens or
//! closes, and read back by a restarted recorder so part numbers continue.
//!
//! Video simulcast: the track records one layer, the highest that delivers a keyframe within
//! [`LAYER_PICK_MS`] of the first packet (or the highest seen then); frames of the candidate
//! layers are held meanwhile, so the keyframes the tap start asked for are not lost.
//!
//! A video track that cannot go on without a keyframe (at its start, after a broken frame, with
//! a part due to rotate) reports `KeyframeWanted`, every [`KEYFRAME_ASK_EVERY_MS`] while it
//! waits: the tap is one-way, so control and signaling carry the ask to the router.
//!
//! Time is an argument (`now_ms`, Unix milliseconds): only the shell reads the clock.
//!
//! Inside: `track` (one tapped track: layer pipelines, layer pick, RTP and wall-clock time),
//! `part` (a part's file: open, write, roll over, close), `manifest` (`manifest.json`),
//! `recovery` (parts a killed recorder left open). This file reads the records and routes them.

mod manifest;
mod part;
mod recovery;
pub mod track;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;

use router_engine::rtp;
use schema::codec::Codec;
use schema::recording::{RecorderEvent, TapMeta};
use schema::tap::TapRecord;
use serde::Serialize;
use tracing::{debug, warn};

pub use manifest::{Manifest, ManifestTrack};

use crate::depack::{Frame, Ordered};
use part::Files;
use track::{Track, recordable};

/// How long a video track looks at its simulcast layers before committing to one.
pub const LAYER_PICK_MS: u64 = 1_500;

/// How often a video track waiting for a keyframe asks for one again (the router throttles its
/// PLIs too; this keeps the recorder → control → signaling path quiet).
pub const KEYFRAME_ASK_EVERY_MS: u64 = 1_000;

/// Where and how files are written.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    /// A part is closed (and the next opened) past this size; video waits for a keyframe.
    pub max_part_bytes: u64,
    /// ... or past this duration.
    pub max_part_ms: u64,
}

/// Counters, for logs and the benchmark.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub records: u64,
    pub bad_records: u64,
    pub packets_unknown_track: u64,
    pub packets_written: u64,
    pub frames_written: u64,
    pub lost_packets: u64,
    pub dropped_frames: u64,
    pub keyframes_asked: u64,
}

/// The recorder state machine. See the module docs.
pub struct Recorder {
    files: Files,
    tracks: HashMap<(u32, u32), Track>,
    failed: HashSet<String>,
    events: VecDeque<RecorderEvent>,
    stats: Stats,
    out: Vec<Ordered>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("tracks", &self.tracks.len()).field("stats", &self.stats).finish()
    }
}

impl Recorder {
    pub fn new(cfg: Config) -> Recorder {
        Recorder {
            files: Files::new(cfg),
            tracks: HashMap::new(),
            failed: HashSet::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            out: Vec::new(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Tracks being recorded.
    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// The next report for control.
    pub fn poll_event(&mut self) -> Option<RecorderEvent> {
        self.events.pop_front()
    }

    /// One record from a tap ring, received at `now_ms` (Unix ms).
    pub fn handle_record(&mut self, now_ms: u64, record: &[u8]) {
        self.stats.records += 1;
        let rec = match TapRecord::decode(record) {
            Ok(r) => r,
            Err(e) => {
                self.stats.bad_records += 1;
                if self.stats.bad_records.is_power_of_two() {
                    warn!(error = %e, count = self.stats.bad_records, "bad tap record");
                }
                return;
            }
        };
        match rec {
            TapRecord::Start { tap, producer, codec, clock_rate, meta } => {
                self.start_track(tap, producer, codec, clock_rate, meta)
            }
            TapRecord::Rtp { tap, producer, layer, packet } => self.packet(now_ms, (tap, producer), layer, packet),
            TapRecord::SenderReport { tap, producer, layer, ntp, rtp_time } => {
                if let Some(t) = self.tracks.get_mut(&(tap, producer)) {
                    t.sr.insert(layer, (ntp, rtp_time));
                }
            }
            TapRecord::Stop { tap, producer } => {
                if let Some(t) = self.tracks.remove(&(tap, producer)) {
                    self.finish_track(t);
                }
            }
        }
    }

    /// Closes every file (shutdown).
    pub fn close_all(&mut self) {
        let keys: Vec<_> = self.tracks.keys().copied().collect();
        for k in keys {
            if let Some(t) = self.tracks.remove(&k) {
                self.finish_track(t);
            }
        }
    }

    fn start_track(&mut self, tap: u32, producer: u32, codec: Codec, clock_rate: u32, meta: &str) {
        if self.tracks.contains_key(&(tap, producer)) {
            return;
        }
        let meta: TapMeta = match serde_json::from_str(meta) {
            Ok(m) => m,
            Err(e) => {
                self.stats.bad_records += 1;
                warn!(tap, producer, error = %e, "tap start with unreadable metadata; track ignored");
                return;
            }
        };
        if self.failed.contains(&meta.recording_id) {
            return;
        }
        if recordable(codec).is_none() || clock_rate == 0 {
            // Kept as a track all the same, so its packets are not counted as unknown forever.
            warn!(tap, producer, ?codec, "codec not recordable; track ignored");
        }
        debug!(tap, producer, track = %meta.track_id, ?codec, "track tapped");
        for part in recovery::recover_parts(&mut self.files.manifests, &meta) {
            debug!(track = %meta.track_id, part = part.part, "part left by a previous run recovered");
            self.events.push_back(RecorderEvent::PartClosed { meta: meta.clone(), part });
        }
        self.tracks.insert((tap, producer), Track::new(meta, codec, clock_rate));
    }

    fn packet(&mut self, now_ms: u64, key: (u32, u32), layer: u8, packet: &[u8]) {
        let Some(track) = self.tracks.get_mut(&key) else {
            self.stats.packets_unknown_track += 1;
            return;
        };
        if recordable(track.codec).is_none() {
            return;
        }
        let Ok(h) = rtp::parse(packet) else {
            self.stats.bad_records += 1;
            return;
        };
        let payload = &packet[h.header_len..h.header_len + h.payload_len];
        if payload.is_empty() {
            return; // padding-only (bandwidth probes)
        }
        track.note_packet(now_ms, layer);
        if track.layer.is_some_and(|l| l != layer) {
            return;
        }
        let codec = track.codec;
        self.out.clear();
        let pipe = track.pipe(layer);
        let lost_before = pipe.reorder.lost;
        pipe.reorder.push(h.sequence_number, h.timestamp, h.marker, payload, &mut self.out);
        self.stats.lost_packets += pipe.reorder.lost - lost_before;
        let ordered = std::mem::take(&mut self.out);
        let result = if codec == Codec::Opus {
            let mut r = Ok(());
            for p in &ordered {
                r = r.and(self.files.write_audio(&mut self.events, track, now_ms, p));
                self.stats.packets_written += 1;
            }
            r
        } else {
            let mut frames = Vec::new();
            for p in &ordered {
                pipe.video.push(p, &mut frames);
            }
            self.video_frames(now_ms, key, layer, frames)
        };
        self.out = ordered;
        if let Err(reason) = result {
            self.fail(key, reason);
            return;
        }
        self.ask_keyframe_if_waiting(now_ms, key);
        if let Some(t) = self.tracks.get_mut(&key)
            && t.part.is_some()
            && !t.announced
        {
            t.announced = true;
            self.events.push_back(RecorderEvent::TrackStarted { meta: t.meta.clone(), codec: t.codec_name().into() });
        }
    }

    /// A video track with nothing to write until a keyframe (its start, after a broken frame,
    /// a part due to rotate) reports `KeyframeWanted`, again every [`KEYFRAME_ASK_EVERY_MS`]
    /// while it waits: the publisher sends keyframes only when asked.
    fn ask_keyframe_if_waiting(&mut self, now_ms: u64, key: (u32, u32)) {
        let Some(t) = self.tracks.get_mut(&key) else { return };
        if !t.codec.is_video() {
            return;
        }
        let waiting = t.rotate_due || t.pipes.values().any(|p| p.video.waiting_for_keyframe());
        if waiting && t.keyframe_asked_ms.is_none_or(|at| now_ms >= at + KEYFRAME_ASK_EVERY_MS) {
            t.keyframe_asked_ms = Some(now_ms);
            self.stats.keyframes_asked += 1;
            debug!(track = %t.meta.track_id, rotate = t.rotate_due, "keyframe wanted");
            self.events.push_back(RecorderEvent::KeyframeWanted { meta: t.meta.clone() });
        }
    }

    fn video_frames(&mut self, now_ms: u64, key: (u32, u32), layer: u8, frames: Vec<Frame>) -> Result<(), String> {
        let Some(track) = self.tracks.get_mut(&key) else { return Ok(()) };
        if track.layer.is_none() {
            for f in track.pick_layer(now_ms, layer, frames).unwrap_or_default() {
                self.files.write_video(&mut self.events, track, now_ms, f, &mut self.stats)?;
            }
            return Ok(());
        }
        for f in frames {
            self.files.write_video(&mut self.events, track, now_ms, f, &mut self.stats)?;
        }
        if let Some(p) = track.pipes.get(&layer) {
            self.stats.dropped_frames = self.stats.dropped_frames.max(p.video.dropped_frames());
        }
        Ok(())
    }

    fn fail(&mut self, key: (u32, u32), reason: String) {
        let Some(track) = self.tracks.remove(&key) else { return };
        let recording = track.meta.recording_id.clone();
        warn!(recording = %recording, %reason, "recording failed");
        self.failed.insert(recording.clone());
        // Every track of that recording stops; what was written stays, closed as it is.
        let keys: Vec<_> =
            self.tracks.iter().filter(|(_, t)| t.meta.recording_id == recording).map(|(k, _)| *k).collect();
        for k in keys {
            self.tracks.remove(&k);
        }
        self.events.push_back(RecorderEvent::Failed { recording_id: recording, reason });
    }

    fn finish_track(&mut self, mut t: Track) {
        // Whatever the reorder buffer still holds goes out (gaps skipped).
        let mut rest = Vec::new();
        for pipe in t.pipes.values_mut() {
            pipe.reorder.flush(&mut rest);
        }
        let now = t.first_packet_ms;
        let mut failed = None;
        if t.codec == Codec::Opus {
            for p in &rest {
                if let Err(e) = self.files.write_audio(&mut self.events, &mut t, now, p) {
                    failed = Some(e);
                    break;
                }
            }
        } else if let Some(l) = t.layer
            && let Some(pipe) = t.pipes.get_mut(&l)
        {
            let mut frames = Vec::new();
            for p in &rest {
                pipe.video.push(p, &mut frames);
            }
            pipe.video.flush(&mut frames);
            for f in frames {
                if let Err(e) = self.files.write_video(&mut self.events, &mut t, now, f, &mut self.stats) {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Err(e) = self.files.close_part(&mut t, &mut self.events) {
            failed = failed.or(Some(e));
        }
        if let Some(reason) = failed {
            let recording = t.meta.recording_id.clone();
            if self.failed.insert(recording.clone()) {
                self.events.push_back(RecorderEvent::Failed { recording_id: recording, reason });
            }
        }
    }
}

#[cfg(test)]
mod tests;
