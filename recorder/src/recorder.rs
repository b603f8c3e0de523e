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

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use router_engine::rtp;
use schema::codec::Codec;
use schema::recording::{PartInfo, RecorderEvent, TapMeta};
use schema::tap::TapRecord;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::depack::{Frame, H264Depacketizer, Ordered, ParamSets, ReorderBuffer, VideoDepacketizer, Vp8Depacketizer};
use crate::mp4::{AvcTrack, Mp4Writer};
use crate::ogg::{OggOpusWriter, opus_packet_samples};
use crate::webm::{VideoTrack, WebmWriter};

/// How long a video track looks at its simulcast layers before committing to one.
pub const LAYER_PICK_MS: u64 = 1_500;

/// How often a video track waiting for a keyframe asks for one again (the router throttles its
/// PLIs too; this keeps the recorder → control → signaling path quiet).
pub const KEYFRAME_ASK_EVERY_MS: u64 = 1_000;

/// Reorder windows (packets): ~100 ms of video at 1 Mbit/s, ~200 ms of audio.
const VIDEO_WINDOW: u64 = 64;
const AUDIO_WINDOW: u64 = 10;

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

/// `manifest.json` of one recording.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub recording_id: String,
    pub room_id: String,
    pub session_id: String,
    pub tracks: Vec<ManifestTrack>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestTrack {
    #[serde(flatten)]
    pub meta: TapMeta,
    pub codec: String,
    /// The simulcast layer recorded (0 lowest).
    pub layer: u8,
    pub parts: Vec<PartInfo>,
}

enum Mux {
    Ogg(OggOpusWriter),
    Webm(WebmWriter),
    Mp4(Mp4Writer),
}

/// The codecs written, and how: the manifest's codec name and the file extension.
fn recordable(codec: Codec) -> Option<(&'static str, &'static str)> {
    match codec {
        Codec::Opus => Some(("opus", "ogg")),
        Codec::Vp8 => Some(("vp8", "webm")),
        Codec::H264 => Some(("h264", "mp4")),
        Codec::Vp9 => None,
    }
}

struct Part {
    file: File,
    rel_path: String,
    mux: Mux,
    part: u32,
    size: u64,
    /// Extended RTP time of the part's first sample.
    base_ts: u64,
    last_ts: u64,
    frames: u64,
    started_at_ms: u64,
    synced: bool,
    /// When the manifest last got this part's size and duration.
    noted_ms: u64,
    /// H.264: the parameter sets in the part's header; others need a new part.
    params: Option<ParamSets>,
}

/// How often an open part's size and duration are written to the manifest, so a part left by
/// a killed recorder is listed with what it holds, within this much.
const PROGRESS_EVERY_MS: u64 = 1_000;

/// One simulcast layer's pipeline.
struct LayerPipe {
    reorder: ReorderBuffer,
    video: VideoDepacketizer,
    /// Frames held while the layer is still being picked.
    held: Vec<Frame>,
}

struct Track {
    meta: TapMeta,
    codec: Codec,
    clock_rate: u32,
    first_packet_ms: u64,
    /// Layers seen so far (bit per layer).
    layers_seen: u8,
    pipes: HashMap<u8, LayerPipe>,
    layer: Option<u8>,
    /// RTP timestamp unwrapping (of the recorded layer).
    ts_high: Option<u64>,
    /// The last sender report of the recorded layer: (NTP, RTP time).
    sr: HashMap<u8, (u64, u32)>,
    part: Option<Part>,
    rotate_due: bool,
    size: Option<(u16, u16)>,
    /// H.264: the parameter sets of the last keyframe.
    params: Option<ParamSets>,
    /// `TrackStarted` was reported.
    announced: bool,
    /// When `KeyframeWanted` was last reported.
    keyframe_asked_ms: Option<u64>,
}

/// The recorder state machine. See the module docs.
pub struct Recorder {
    cfg: Config,
    tracks: HashMap<(u32, u32), Track>,
    manifests: HashMap<String, Manifest>,
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

/// Why a file operation failed, as the API shows it.
fn describe(op: &str, path: &Path, e: &std::io::Error) -> String {
    let what = match e.raw_os_error() {
        Some(libc::ENOSPC) => "disk full".to_string(),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => "directory not writable".to_string(),
        _ => e.to_string(),
    };
    format!("cannot {op} {}: {what}", path.display())
}

/// NTP (32.32 fixed point since 1900) to Unix milliseconds.
fn ntp_to_unix_ms(ntp: u64) -> u64 {
    const EPOCH_DELTA: u64 = 2_208_988_800;
    let secs = (ntp >> 32).saturating_sub(EPOCH_DELTA);
    let frac = ((ntp & 0xffff_ffff) * 1000) >> 32;
    secs * 1000 + frac
}

fn safe_component(s: &str) -> String {
    let cleaned: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(64).collect();
    if cleaned.is_empty() { "_".into() } else { cleaned }
}

impl Recorder {
    pub fn new(cfg: Config) -> Recorder {
        Recorder {
            cfg,
            tracks: HashMap::new(),
            manifests: HashMap::new(),
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
                self.start_track(now_ms, tap, producer, codec, clock_rate, meta)
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

    fn start_track(&mut self, now_ms: u64, tap: u32, producer: u32, codec: Codec, clock_rate: u32, meta: &str) {
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
            warn!(tap, producer, ?codec, "codec not recordable; track ignored");
            // Remember it so its packets are not counted as unknown forever.
        }
        debug!(tap, producer, track = %meta.track_id, ?codec, "track tapped");
        self.recover_parts(&meta);
        self.tracks.insert(
            (tap, producer),
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
            },
        );
        let _ = now_ms;
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
        if track.layers_seen == 0 {
            track.first_packet_ms = now_ms;
        }
        track.layers_seen |= 1 << layer.min(7);
        if track.layer.is_some_and(|l| l != layer) {
            return;
        }
        let window = if track.codec == Codec::Opus { AUDIO_WINDOW } else { VIDEO_WINDOW };
        let codec = track.codec;
        let pipe = track.pipes.entry(layer).or_insert_with(|| LayerPipe {
            reorder: ReorderBuffer::new(window),
            video: if codec == Codec::H264 {
                VideoDepacketizer::H264(H264Depacketizer::new())
            } else {
                VideoDepacketizer::Vp8(Vp8Depacketizer::new())
            },
            held: Vec::new(),
        });
        self.out.clear();
        let lost_before = pipe.reorder.lost;
        pipe.reorder.push(h.sequence_number, h.timestamp, h.marker, payload, &mut self.out);
        self.stats.lost_packets += pipe.reorder.lost - lost_before;
        let ordered = std::mem::take(&mut self.out);
        let result = if track.codec == Codec::Opus {
            let mut r = Ok(());
            for p in &ordered {
                r = r.and(write_audio(&self.cfg, &mut self.manifests, &mut self.events, track, now_ms, p));
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
            let codec = recordable(t.codec).map_or("", |c| c.0);
            self.events.push_back(RecorderEvent::TrackStarted { meta: t.meta.clone(), codec: codec.into() });
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
            let Some(pipe) = track.pipes.get_mut(&layer) else { return Ok(()) };
            pipe.held.extend(frames);
            let top = 7 - track.layers_seen.leading_zeros() as u8;
            let elapsed = now_ms.saturating_sub(track.first_packet_ms);
            let ready = |l: u8| track.pipes.get(&l).is_some_and(|p| !p.held.is_empty());
            let pick = if ready(top) {
                Some(top)
            } else if elapsed >= LAYER_PICK_MS {
                (0..=top).rev().find(|&l| ready(l))
            } else {
                None
            };
            let Some(pick) = pick else {
                // Bound what is held: drop the oldest beyond a few seconds' worth.
                for p in track.pipes.values_mut() {
                    if p.held.len() > 300 {
                        p.held.drain(..p.held.len() - 300);
                    }
                }
                return Ok(());
            };
            debug!(track = %track.meta.track_id, layer = pick, "recording layer chosen");
            track.layer = Some(pick);
            let held = track.pipes.get_mut(&pick).map(|p| std::mem::take(&mut p.held)).unwrap_or_default();
            track.pipes.retain(|&l, _| l == pick);
            for f in held {
                write_video(&self.cfg, &mut self.manifests, &mut self.events, track, now_ms, f, &mut self.stats)?;
            }
            return Ok(());
        }
        for f in frames {
            write_video(&self.cfg, &mut self.manifests, &mut self.events, track, now_ms, f, &mut self.stats)?;
        }
        if let Some(p) = track.pipes.get(&layer) {
            self.stats.dropped_frames = self.stats.dropped_frames.max(p.video.dropped_frames());
        }
        Ok(())
    }

    /// Parts of this track that an earlier recorder process left open (it was killed): they
    /// hold whole pages, clusters and fragments up to the kill, so they are closed as they are
    /// and reported, with the size on disk and the duration last noted. (An MP4 part cut in
    /// the middle of a fragment is first cut back to its last whole one.)
    fn recover_parts(&mut self, meta: &TapMeta) {
        let rec_dir = self.cfg.dir.join(safe_component(&meta.recording_id));
        let manifest = load_manifest(&mut self.manifests, &rec_dir, meta);
        let mut recovered = Vec::new();
        for t in manifest.tracks.iter_mut().filter(|t| t.meta.track_id == meta.track_id) {
            for p in t.parts.iter_mut().filter(|p| !p.complete) {
                let path = self.cfg.dir.join(&p.path);
                if p.path.ends_with(".mp4")
                    && let Err(e) = trim_to_whole_fragments(&path)
                {
                    warn!(path = %path.display(), error = %e, "recovered part not cut to its last fragment");
                }
                if let Ok(m) = std::fs::metadata(&path) {
                    p.size = m.len();
                }
                if p.path.ends_with(".webm")
                    && let Err(e) = patch_duration(&path, p.duration_ms as f64)
                {
                    warn!(path = %path.display(), error = %e, "recovered part keeps no duration");
                }
                p.complete = true;
                recovered.push(p.clone());
            }
        }
        if recovered.is_empty() {
            return;
        }
        if let Err(e) = write_manifest(&rec_dir, manifest) {
            warn!(error = %e, "manifest not updated after recovering parts");
        }
        for part in recovered {
            debug!(track = %meta.track_id, part = part.part, "part left by a previous run recovered");
            self.events.push_back(RecorderEvent::PartClosed { meta: meta.clone(), part });
        }
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
                if let Err(e) = write_audio(&self.cfg, &mut self.manifests, &mut self.events, &mut t, now, p) {
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
                if let Err(e) =
                    write_video(&self.cfg, &mut self.manifests, &mut self.events, &mut t, now, f, &mut self.stats)
                {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(part) = t.part.take() {
            match close_part(&self.cfg, &mut self.manifests, &t, part) {
                Ok(ev) => self.events.push_back(ev),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(reason) = failed {
            let recording = t.meta.recording_id.clone();
            if self.failed.insert(recording.clone()) {
                self.events.push_back(RecorderEvent::Failed { recording_id: recording, reason });
            }
        }
    }
}

/// Cuts an MP4 part that a killed writer left back to its last whole fragment, so that every
/// sample it lists is there.
fn trim_to_whole_fragments(path: &Path) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let keep = crate::mp4::whole_boxes(len, |at| {
        let mut head = [0u8; 8];
        f.seek(SeekFrom::Start(at)).and_then(|_| f.read_exact(&mut head)).ok()?;
        Some(head)
    });
    if keep < len {
        f.set_len(keep)?;
    }
    Ok(())
}

/// Gives a WebM part that a killed writer left its duration, over the placeholder.
fn patch_duration(path: &Path, duration_ms: f64) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut head = vec![0u8; 512];
    let n = f.read(&mut head)?;
    let Some(at) = crate::webm::find_placeholder(&head[..n]) else { return Ok(()) };
    f.seek(SeekFrom::Start(at as u64))?;
    f.write_all(&crate::webm::duration_patch(duration_ms))
}

fn unwrap_ts(t: &mut Track, ts: u32) -> u64 {
    let ext = match t.ts_high {
        None => (1u64 << 32) + u64::from(ts),
        Some(h) => {
            let delta = ts.wrapping_sub(h as u32) as i32;
            (h as i64 + i64::from(delta)).max(0) as u64
        }
    };
    t.ts_high = Some(t.ts_high.map_or(ext, |h| h.max(ext)));
    ext
}

/// The wall-clock time of RTP time `ts` on `layer`, from the last sender report.
fn wall_clock_of(t: &Track, layer: u8, ts: u32) -> Option<u64> {
    let &(ntp, rtp_time) = t.sr.get(&layer)?;
    let delta = ts.wrapping_sub(rtp_time) as i32;
    let ms = ntp_to_unix_ms(ntp) as i64 + i64::from(delta) * 1000 / i64::from(t.clock_rate);
    u64::try_from(ms).ok()
}

fn open_part(
    cfg: &Config,
    manifests: &mut HashMap<String, Manifest>,
    t: &mut Track,
    now_ms: u64,
    first_ts: u32,
    ext_ts: u64,
) -> Result<(), String> {
    let rec_dir = cfg.dir.join(safe_component(&t.meta.recording_id));
    let manifest = load_manifest(manifests, &rec_dir, &t.meta);
    let layer = t.layer.unwrap_or(0);
    let part_no = manifest
        .tracks
        .iter()
        .find(|m| m.meta.track_id == t.meta.track_id)
        .map_or(0, |m| m.parts.iter().map(|p| p.part).max().unwrap_or(0))
        + 1;
    let ext = recordable(t.codec).map_or("bin", |c| c.1);
    let rel = format!(
        "{}/{}/{}.{part_no}.{ext}",
        safe_component(&t.meta.recording_id),
        safe_component(&t.meta.peer_id),
        safe_component(&t.meta.track_id)
    );
    let path = cfg.dir.join(&rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| describe("create", parent, &e))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| describe("open", &path, &e))?;
    let (mux, head) = match t.codec {
        Codec::Opus => {
            let mut w = OggOpusWriter::new(first_ts ^ 0x5eed);
            let head = w.headers(2, 48_000);
            (Mux::Ogg(w), head)
        }
        Codec::H264 => {
            let params = t.params.clone().ok_or("an H.264 part cannot start without SPS and PPS")?;
            let track = AvcTrack {
                params,
                width: t.size.map_or(640, |s| s.0),
                height: t.size.map_or(480, |s| s.1),
                timescale: t.clock_rate,
            };
            let (w, head) = Mp4Writer::start(&track).map_err(|e| format!("cannot start {}: {e}", path.display()))?;
            (Mux::Mp4(w), head)
        }
        _ => {
            let (w, head) = WebmWriter::start(&VideoTrack {
                codec_id: "V_VP8",
                width: t.size.map_or(640, |s| s.0),
                height: t.size.map_or(480, |s| s.1),
            });
            (Mux::Webm(w), head)
        }
    };
    file.write_all(&head).map_err(|e| describe("write", &path, &e))?;
    let (started_at_ms, synced) = match wall_clock_of(t, layer, first_ts) {
        Some(ms) => (ms, true),
        None => (now_ms, false),
    };
    let part = Part {
        file,
        rel_path: rel.clone(),
        mux,
        part: part_no,
        size: head.len() as u64,
        base_ts: ext_ts,
        last_ts: ext_ts,
        frames: 0,
        started_at_ms,
        synced,
        noted_ms: now_ms,
        params: t.params.clone().filter(|_| t.codec == Codec::H264),
    };
    let info = PartInfo {
        part: part_no,
        path: rel,
        size: part.size,
        duration_ms: 0,
        frames: 0,
        started_at_ms,
        synced,
        complete: false,
    };
    let first_part = !manifest.tracks.iter().any(|m| m.meta.track_id == t.meta.track_id);
    upsert_part(manifest, t, layer, info);
    write_manifest(&rec_dir, manifest)?;
    t.part = Some(part);
    if first_part {
        debug!(track = %t.meta.track_id, "first part opened");
    }
    Ok(())
}

fn load_manifest<'a>(manifests: &'a mut HashMap<String, Manifest>, rec_dir: &Path, meta: &TapMeta) -> &'a mut Manifest {
    manifests.entry(meta.recording_id.clone()).or_insert_with(|| {
        let from_disk = std::fs::read(rec_dir.join("manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        from_disk.unwrap_or_else(|| Manifest {
            recording_id: meta.recording_id.clone(),
            room_id: meta.room_id.clone(),
            session_id: meta.session_id.clone(),
            tracks: Vec::new(),
        })
    })
}

fn upsert_part(manifest: &mut Manifest, t: &Track, layer: u8, info: PartInfo) {
    let codec = recordable(t.codec).map_or("", |c| c.0).to_string();
    let entry = match manifest.tracks.iter_mut().position(|m| m.meta.track_id == t.meta.track_id) {
        Some(i) => &mut manifest.tracks[i],
        None => {
            manifest.tracks.push(ManifestTrack { meta: t.meta.clone(), codec, layer, parts: Vec::new() });
            let last = manifest.tracks.len() - 1;
            &mut manifest.tracks[last]
        }
    };
    entry.layer = layer;
    match entry.parts.iter_mut().find(|p| p.part == info.part) {
        Some(p) => *p = info,
        None => entry.parts.push(info),
    }
}

fn write_manifest(rec_dir: &Path, manifest: &Manifest) -> Result<(), String> {
    let tmp = rec_dir.join("manifest.json.tmp");
    let body = serde_json::to_vec_pretty(manifest).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, body).map_err(|e| describe("write", &tmp, &e))?;
    let path = rec_dir.join("manifest.json");
    std::fs::rename(&tmp, &path).map_err(|e| describe("rename", &path, &e))
}

fn close_part(
    cfg: &Config,
    manifests: &mut HashMap<String, Manifest>,
    t: &Track,
    mut part: Part,
) -> Result<RecorderEvent, String> {
    let path = cfg.dir.join(&part.rel_path);
    let duration_ms = match &mut part.mux {
        Mux::Ogg(w) => {
            let mut out = Vec::new();
            w.finish(&mut out);
            part.file.write_all(&out).map_err(|e| describe("write", &path, &e))?;
            part.size += out.len() as u64;
            w.granule() / 48
        }
        Mux::Webm(w) => {
            let (tail, (offset, patch)) = w.finish();
            part.file.write_all(&tail).map_err(|e| describe("write", &path, &e))?;
            part.size += tail.len() as u64;
            part.file.seek(SeekFrom::Start(offset)).map_err(|e| describe("seek", &path, &e))?;
            part.file.write_all(&patch).map_err(|e| describe("write", &path, &e))?;
            let frames = w.frames();
            let d = w.duration_ms();
            if frames > 1 { d + d / (frames - 1) } else { d }
        }
        Mux::Mp4(w) => {
            let tail = w.finish();
            part.file.write_all(&tail).map_err(|e| describe("write", &path, &e))?;
            part.size += tail.len() as u64;
            w.total_ms()
        }
    };
    part.file.sync_data().map_err(|e| describe("sync", &path, &e))?;
    let info = PartInfo {
        part: part.part,
        path: part.rel_path.clone(),
        size: part.size,
        duration_ms,
        frames: part.frames,
        started_at_ms: part.started_at_ms,
        synced: part.synced,
        complete: true,
    };
    let rec_dir = cfg.dir.join(safe_component(&t.meta.recording_id));
    let manifest = load_manifest(manifests, &rec_dir, &t.meta);
    upsert_part(manifest, t, t.layer.unwrap_or(0), info.clone());
    write_manifest(&rec_dir, manifest)?;
    Ok(RecorderEvent::PartClosed { meta: t.meta.clone(), part: info })
}

/// Writes an open part's size and duration to the manifest, at most every [`PROGRESS_EVERY_MS`].
fn note_progress(
    cfg: &Config,
    manifests: &mut HashMap<String, Manifest>,
    t: &mut Track,
    now_ms: u64,
) -> Result<(), String> {
    let layer = t.layer.unwrap_or(0);
    let clock = u64::from(t.clock_rate);
    let Some(part) = t.part.as_mut() else { return Ok(()) };
    if now_ms < part.noted_ms + PROGRESS_EVERY_MS {
        return Ok(());
    }
    part.noted_ms = now_ms;
    // What the file holds now: every Ogg page is written at once; WebM only whole clusters.
    let duration_ms = match &part.mux {
        Mux::Ogg(_) => (part.last_ts - part.base_ts) * 1000 / clock,
        Mux::Webm(w) => w.flushed_ms(),
        Mux::Mp4(w) => w.flushed_ms(),
    };
    let info = PartInfo {
        part: part.part,
        path: part.rel_path.clone(),
        size: part.size,
        duration_ms,
        frames: part.frames,
        started_at_ms: part.started_at_ms,
        synced: part.synced,
        complete: false,
    };
    let rec_dir = cfg.dir.join(safe_component(&t.meta.recording_id));
    let manifest = load_manifest(manifests, &rec_dir, &t.meta);
    upsert_part(manifest, t, layer, info);
    write_manifest(&rec_dir, manifest)
}

fn part_due(cfg: &Config, part: &Part, clock_rate: u32) -> bool {
    let ms = (part.last_ts - part.base_ts) * 1000 / u64::from(clock_rate);
    part.size >= cfg.max_part_bytes || ms >= cfg.max_part_ms
}

fn write_audio(
    cfg: &Config,
    manifests: &mut HashMap<String, Manifest>,
    events: &mut VecDeque<RecorderEvent>,
    t: &mut Track,
    now_ms: u64,
    p: &Ordered,
) -> Result<(), String> {
    let ext = unwrap_ts(t, p.timestamp);
    if t.part.as_ref().is_some_and(|part| part_due(cfg, part, t.clock_rate))
        && let Some(part) = t.part.take()
    {
        events.push_back(close_part(cfg, manifests, t, part)?);
    }
    if t.part.is_none() {
        open_part(cfg, manifests, t, now_ms, p.timestamp, ext)?;
    }
    let Some(part) = t.part.as_mut() else { return Ok(()) };
    let Some(samples) = opus_packet_samples(&p.payload) else { return Ok(()) };
    let since = ext.saturating_sub(part.base_ts) * 48_000 / u64::from(t.clock_rate);
    let Mux::Ogg(w) = &mut part.mux else { return Ok(()) };
    let mut out = Vec::with_capacity(p.payload.len() + 40);
    w.packet(&p.payload, since + samples, &mut out);
    let path = &part.rel_path;
    part.file.write_all(&out).map_err(|e| describe("write", &cfg.dir.join(path), &e))?;
    part.size += out.len() as u64;
    part.last_ts = part.last_ts.max(ext);
    part.frames += 1;
    note_progress(cfg, manifests, t, now_ms)
}

fn write_video(
    cfg: &Config,
    manifests: &mut HashMap<String, Manifest>,
    events: &mut VecDeque<RecorderEvent>,
    t: &mut Track,
    now_ms: u64,
    f: Frame,
    stats: &mut Stats,
) -> Result<(), String> {
    let ext = unwrap_ts(t, f.timestamp);
    if f.keyframe {
        if f.size.is_some() {
            t.size = f.size;
        }
        if f.params.is_some() {
            t.params = f.params.clone();
        }
        if t.part.as_ref().is_some_and(|part| part_due(cfg, part, t.clock_rate)) {
            t.rotate_due = true;
        }
        // New parameter sets (a new resolution, say) do not fit the part's avcC: a new part.
        if let Some(part) = t.part.as_ref()
            && part.params.is_some()
            && part.params != f.params
        {
            t.rotate_due = true;
        }
        if t.rotate_due
            && let Some(part) = t.part.take()
        {
            t.rotate_due = false;
            events.push_back(close_part(cfg, manifests, t, part)?);
        }
    }
    if t.part.is_none() {
        if !f.keyframe {
            return Ok(());
        }
        open_part(cfg, manifests, t, now_ms, f.timestamp, ext)?;
    }
    let Some(part) = t.part.as_mut() else { return Ok(()) };
    let ticks = ext.saturating_sub(part.base_ts);
    let out = match &mut part.mux {
        Mux::Webm(w) => w.frame(ticks * 1000 / u64::from(t.clock_rate), f.keyframe, &f.data),
        Mux::Mp4(w) => w.frame(ticks, f.keyframe, &f.data),
        Mux::Ogg(_) => return Ok(()),
    };
    if !out.is_empty() {
        let path = &part.rel_path;
        part.file.write_all(&out).map_err(|e| describe("write", &cfg.dir.join(path), &e))?;
        part.size += out.len() as u64;
    }
    part.last_ts = part.last_ts.max(ext);
    part.frames += 1;
    stats.frames_written += 1;
    // Due to rotate: the next keyframe closes the part (and one is asked for).
    if part_due(cfg, part, t.clock_rate) {
        t.rotate_due = true;
    }
    note_progress(cfg, manifests, t, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_converts_to_unix_ms() {
        // 2024-01-01T00:00:00Z is 1704067200 Unix, + 2208988800 in NTP; half a second.
        let ntp = ((1_704_067_200u64 + 2_208_988_800) << 32) | 0x8000_0000;
        assert_eq!(ntp_to_unix_ms(ntp), 1_704_067_200_500);
    }

    #[test]
    fn path_components_are_sanitized() {
        assert_eq!(safe_component("../etc/passwd"), "___etc_passwd");
        assert_eq!(safe_component(""), "_");
        assert_eq!(safe_component("a-b_c9"), "a-b_c9");
    }
}
