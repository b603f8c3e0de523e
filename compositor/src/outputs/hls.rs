//! HLS: one hlssink2 per rendition cuts MPEG-TS segments on keyframes; the playlists are
//! ours ([`super::playlist`]), rewritten as each segment closes.
//!
//! hlssink2 (1.22) writes a playlist of its own, but without a playlist type, program dates,
//! date ranges or a multivariant playlist, and it cannot be told to continue a restarted
//! job's playlist. So it keeps its own in a file nobody reads (`<dir>/<i>/.hlssink2.m3u8`),
//! deletes nothing (`max-files=0`), and the job writes, per rendition `i`:
//! - `<dir>/<i>/seg<n>.ts`: segments, `n` going on from a previous run of the job;
//! - `<dir>/<i>/index.m3u8`: the live playlist (a window of the last segments, or the whole
//!   event), with `#EXT-X-PROGRAM-DATE-TIME` on every segment and timed metadata as
//!   `#EXT-X-DATERANGE`; `#EXT-X-ENDLIST` when the job finishes;
//! - with `vod`, `<dir>/<i>/vod.m3u8`: every segment of every run, appended to as segments
//!   close (so a crash leaves it listing all but the open one) and rewritten with
//!   `#EXT-X-ENDLIST` at finish;
//! - and `<dir>/master.m3u8` once every rendition has a segment (its caps then name the H.264
//!   profile and level for `CODECS`).
//!
//! Segment times come from splitmuxsink's fragment-opened/closed messages (running time),
//! handled on the streaming thread that posts them (a bus sync handler), so the playlists
//! move whether or not the job's owner is polling. hlssink2 1.22 posts them with no location:
//! the n-th closed fragment of a rendition is the file numbered `start-index + n`.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use util::LockExt;

use super::playlist::{self, DateRange, Kind, MediaPlaylist, Segment, Variant, segment_uri};
use super::{Taps, h264_encoder, link_tee, nanos, static_pad};
use crate::config::{Config, HlsOutput, HlsPlaylist, Rendition};
use crate::pipeline::{Error, build_err, i420_capsfilter, make};

const INDEX: &str = "index.m3u8";
const VOD: &str = "vod.m3u8";
const MASTER: &str = "master.m3u8";

/// The HLS output of a running job.
#[derive(Debug, Clone)]
pub(crate) struct Hls {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    output: HlsOutput,
    fps: u32,
    audio_bps: u32,
    /// The wall clock (Unix ms) at running time zero: a segment's program date is this plus
    /// the running time of its first frame.
    anchor_ms: u64,
    renditions: Vec<RenditionState>,
    dateranges: Vec<DateRange>,
    next_daterange: u64,
    master_written: bool,
    /// The VOD recording is paused: segments that close meanwhile stay out of `vod.m3u8`.
    vod_paused: bool,
}

#[derive(Debug)]
struct RenditionState {
    dir: PathBuf,
    size: Rendition,
    live: MediaPlaylist,
    vod: Option<MediaPlaylist>,
    next_seq: u64,
    opened_at: Option<u64>,
    /// The next segment follows a previous run's: it carries `#EXT-X-DISCONTINUITY`.
    discontinuity: bool,
    /// The next segment of the VOD follows a pause: it carries `#EXT-X-DISCONTINUITY` there.
    vod_discontinuity: bool,
    /// Segments out of the live window, still on disk for players that listed them.
    retired: VecDeque<Segment>,
    /// How many segments stay on disk after leaving the live window; `None`: all of them.
    keep_retired: Option<usize>,
    /// hlssink2's video pad: its caps name the H.264 profile and level.
    video_pad: gst::Pad,
}

/// Builds one hlssink2 per rendition off the tees, picking up what a previous run of the job
/// left in `<dir>/<i>/`.
pub(crate) fn build(pipeline: &gst::Pipeline, taps: &Taps, config: &Config, hls: &HlsOutput) -> Result<Hls, Error> {
    let mut renditions = Vec::new();
    for (i, size) in hls.renditions.iter().enumerate() {
        let dir = hls.dir.join(i.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
        let recovered = recover(&dir, hls)?;
        let sink = gst::ElementFactory::make("hlssink2")
            .name(format!("hls{i}"))
            .property("location", dir.join("seg%05d.ts").to_string_lossy().as_ref())
            .property("playlist-location", dir.join(".hlssink2.m3u8").to_string_lossy().as_ref())
            .property("playlist-length", 1u32)
            .property("max-files", 0u32)
            .property("target-duration", u32::try_from(hls.segment_duration.as_secs()).unwrap_or(u32::MAX))
            .property("send-keyframe-requests", true)
            .build()
            .map_err(|_| Error::MissingElement { element: "hlssink2", package: "gstreamer1.0-plugins-bad" })?;
        set_start_index(&sink, recovered.next_seq)?;
        pipeline.add(&sink).map_err(build_err("add hlssink2"))?;
        let video_pad = sink.request_pad_simple("video").ok_or_else(|| Error::Build("hlssink2 video pad".into()))?;
        let audio_pad = sink.request_pad_simple("audio").ok_or_else(|| Error::Build("hlssink2 audio pad".into()))?;

        let video_queue = make("queue")?;
        pipeline.add(&video_queue).map_err(build_err("add an HLS queue"))?;
        static_pad(&video_queue, "src")?
            .link(&video_pad)
            .map_err(|e| Error::Build(format!("link HLS video: {e:?}")))?;
        if i == 0 {
            link_tee(&taps.h264, &static_pad(&video_queue, "sink")?)?;
        } else {
            // A lower rendition that falls behind drops pictures rather than holding up the
            // tee, and with it the main encode.
            let raw_queue = make("queue")?;
            raw_queue.set_property_from_str("leaky", "downstream");
            raw_queue.set_property("max-size-buffers", 0u32);
            raw_queue.set_property("max-size-bytes", 0u32);
            raw_queue.set_property("max-size-time", nanos(Duration::from_secs(1)));
            let scale = make("videoscale")?;
            let caps = i420_capsfilter(size.width, size.height, None)?;
            let [x264, h264parse] = h264_encoder(config, size.video_kbps)?;
            let chain = [&raw_queue, &scale, &caps, &x264, &h264parse, &video_queue];
            pipeline.add_many(&chain[..5]).map_err(build_err("add a rendition"))?;
            gst::Element::link_many(chain).map_err(build_err("link a rendition"))?;
            link_tee(&taps.raw, &static_pad(&raw_queue, "sink")?)?;
        }
        let audio_queue = make("queue")?;
        pipeline.add(&audio_queue).map_err(build_err("add an HLS queue"))?;
        static_pad(&audio_queue, "src")?
            .link(&audio_pad)
            .map_err(|e| Error::Build(format!("link HLS audio: {e:?}")))?;
        link_tee(&taps.aac, &static_pad(&audio_queue, "sink")?)?;
        let Recovered { live, vod, next_seq, discontinuity, keep_retired } = recovered;
        renditions.push(RenditionState {
            dir,
            size: *size,
            live,
            vod,
            next_seq,
            opened_at: None,
            discontinuity,
            vod_discontinuity: false,
            retired: VecDeque::new(),
            keep_retired,
            video_pad,
        });
    }
    let state = State {
        output: hls.clone(),
        fps: config.fps,
        audio_bps: config.audio_bitrate_bps,
        anchor_ms: util::unix_ms(),
        renditions,
        dateranges: Vec::new(),
        next_daterange: 0,
        master_written: false,
        vod_paused: false,
    };
    Ok(Hls { state: Arc::new(Mutex::new(state)) })
}

/// splitmuxsink numbers its fragments from its `start-index`; hlssink2 (1.22) does not expose
/// it, so it is set on hlssink2's splitmuxsink child.
fn set_start_index(hlssink2: &gst::Element, index: u64) -> Result<(), Error> {
    let bin = hlssink2.downcast_ref::<gst::Bin>().ok_or_else(|| Error::Build("hlssink2 is not a bin".into()))?;
    let split = bin
        .children()
        .into_iter()
        .find(|c| c.factory().is_some_and(|f| f.name() == "splitmuxsink"))
        .ok_or_else(|| Error::Build("hlssink2 without a splitmuxsink".into()))?;
    let index = i32::try_from(index).map_err(|_| Error::Config(format!("HLS segment number {index} too large")))?;
    split.set_property("start-index", index);
    Ok(())
}

/// What a previous run of the job left in a rendition's directory: its live playlist (the
/// window or event goes on from it, after a discontinuity), its VOD playlist, and segments.
struct Recovered {
    live: MediaPlaylist,
    vod: Option<MediaPlaylist>,
    next_seq: u64,
    discontinuity: bool,
    keep_retired: Option<usize>,
}

fn recover(dir: &Path, hls: &HlsOutput) -> Result<Recovered, Error> {
    let target = hls.segment_duration.as_secs();
    let kind = match hls.playlist {
        HlsPlaylist::Live { segments } => Kind::Live(usize::try_from(segments).unwrap_or(usize::MAX)),
        HlsPlaylist::Event => Kind::Event,
    };
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).map(|t| playlist::parse_media(&t)).ok();
    let previous = read(INDEX).unwrap_or_default();
    let history = if hls.vod { read(VOD).unwrap_or_default() } else { Vec::new() };
    let on_disk: Vec<u64> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| segment_number(&e.ok()?.file_name().to_string_lossy())).collect())
        .unwrap_or_default();
    let last = previous.iter().chain(&history).map(|s| s.seq).chain(on_disk.iter().copied()).max();
    let keep_retired = match (kind, hls.vod) {
        // RFC 8216 §6.2.2: a segment stays available for its duration plus the playlist's
        // after it leaves the playlist.
        (Kind::Live(n), false) => Some(n + 1),
        _ => None,
    };
    let mut live = MediaPlaylist::new(kind, target);
    for s in &previous {
        live.push(s.clone());
    }
    if keep_retired.is_some() {
        // Segments no playlist lists any more (a crash, or the window moved past them).
        for n in on_disk {
            if !live.segments().any(|s| s.seq == n) {
                let _ = std::fs::remove_file(dir.join(segment_uri(n)));
            }
        }
    }
    let vod = if hls.vod {
        let mut vod = MediaPlaylist::new(Kind::Vod, target);
        for s in history {
            vod.push(s);
        }
        // The file is appended to as segments close; a previous run's ENDLIST goes.
        write_atomic(&dir.join(VOD), &vod.render(&[]))?;
        Some(vod)
    } else {
        None
    };
    Ok(Recovered { live, vod, next_seq: last.map_or(0, |n| n + 1), discontinuity: last.is_some(), keep_retired })
}

fn segment_number(name: &str) -> Option<u64> {
    name.strip_prefix("seg")?.strip_suffix(".ts")?.parse().ok()
}

fn write_atomic(path: &Path, text: &str) -> Result<(), Error> {
    // A player reading while we write sees the old playlist or the new, never half of one.
    let tmp = path.with_extension("m3u8.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::Output(format!("cannot write {}: {e}", path.display())))
}

impl Hls {
    /// Called once the pipeline runs: `running_time` is its running time now.
    pub fn set_anchor(&self, running_time: Duration) {
        let ms = u64::try_from(running_time.as_millis()).unwrap_or(0);
        self.state.lock_unpoisoned().anchor_ms = util::unix_ms().saturating_sub(ms);
    }

    /// A message from the bus, on the thread that posted it: fragment opened/closed messages
    /// of a rendition's splitmuxsink move its playlists.
    pub fn handle_message(&self, msg: &gst::Message) {
        let gst::MessageView::Element(element) = msg.view() else { return };
        let Some(s) = element.structure() else { return };
        let opened = match s.name().as_str() {
            "splitmuxsink-fragment-opened" => true,
            "splitmuxsink-fragment-closed" => false,
            _ => return,
        };
        let Some(rendition) = msg
            .src()
            .and_then(|src| src.parent())
            .and_then(|p| p.name().strip_prefix("hls").and_then(|i| i.parse::<usize>().ok()))
        else {
            return;
        };
        let Ok(running_time) = s.get::<u64>("running-time") else { return };
        let mut state = self.state.lock_unpoisoned();
        if opened {
            if let Some(r) = state.renditions.get_mut(rendition) {
                r.opened_at = Some(running_time);
            }
        } else if let Err(e) = state.segment_closed(rendition, running_time) {
            tracing::warn!(rendition, "HLS: {e}");
        }
    }

    /// Adds an `#EXT-X-DATERANGE` starting now to the live playlists, at once.
    pub fn add_timed_metadata(&self, payload: &str, duration: Duration, running_time: Duration) -> Result<(), Error> {
        let mut state = self.state.lock_unpoisoned();
        let start_ms = state.anchor_ms + u64::try_from(running_time.as_millis()).unwrap_or(0);
        let id = format!("{start_ms}-{}", state.next_daterange);
        state.next_daterange += 1;
        state.dateranges.push(DateRange { id, start_ms, duration, payload: payload.as_bytes().to_vec() });
        for i in 0..state.renditions.len() {
            state.write_live(i)?;
        }
        Ok(())
    }

    /// Whether the job keeps a VOD recording (`vod.m3u8`).
    pub fn has_vod(&self) -> bool {
        self.state.lock_unpoisoned().output.vod
    }

    /// Pauses or resumes the VOD recording: the segments that close while it is paused stay in
    /// the live playlists (viewers go on watching) but are left out of `vod.m3u8`, which goes on
    /// after an `#EXT-X-DISCONTINUITY`. A segment counts by when it closes (segments are short).
    pub fn set_vod_paused(&self, paused: bool) {
        self.state.lock_unpoisoned().vod_paused = paused;
    }

    pub fn vod_paused(&self) -> bool {
        self.state.lock_unpoisoned().vod_paused
    }

    /// The job has ended: every playlist gets its `#EXT-X-ENDLIST`.
    pub fn finish(&self) -> Result<(), Error> {
        let mut state = self.state.lock_unpoisoned();
        let mut result = Ok(());
        let dateranges = state.dateranges.clone();
        for i in 0..state.renditions.len() {
            state.renditions[i].live.ended = true;
            result = result.and(state.write_live(i));
            let r = &mut state.renditions[i];
            if let Some(vod) = &mut r.vod {
                vod.ended = true;
                result = result.and(write_atomic(&r.dir.join(VOD), &vod.render(&dateranges)));
            }
        }
        if !state.master_written {
            result = result.and(state.write_master());
        }
        result
    }
}

impl State {
    fn segment_closed(&mut self, i: usize, closed_at: u64) -> Result<(), Error> {
        let anchor_ms = self.anchor_ms;
        let Some(r) = self.renditions.get_mut(i) else { return Ok(()) };
        let Some(opened_at) = r.opened_at.take() else { return Ok(()) };
        let seq = r.next_seq;
        r.next_seq += 1;
        let segment = Segment {
            seq,
            uri: segment_uri(seq),
            duration: Duration::from_nanos(closed_at.saturating_sub(opened_at)),
            date_ms: Some(anchor_ms + opened_at / 1_000_000),
            discontinuity: std::mem::take(&mut r.discontinuity),
        };
        for gone in r.live.push(segment.clone()) {
            if r.keep_retired.is_some() {
                r.retired.push_back(gone);
            }
        }
        while r.keep_retired.is_some_and(|keep| r.retired.len() > keep) {
            if let Some(old) = r.retired.pop_front()
                && let Err(e) = std::fs::remove_file(r.dir.join(&old.uri))
            {
                tracing::warn!(segment = %old.uri, "HLS: cannot delete an old segment: {e}");
            }
        }
        if self.vod_paused {
            r.vod_discontinuity |= r.vod.is_some();
        } else if let Some(vod) = &mut r.vod {
            let segment = Segment {
                discontinuity: segment.discontinuity || std::mem::take(&mut r.vod_discontinuity),
                ..segment.clone()
            };
            vod.push(segment.clone());
            let path = r.dir.join(VOD);
            std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(playlist::render_segment(&segment).as_bytes()))
                .map_err(|e| Error::Output(format!("cannot append to {}: {e}", path.display())))?;
        }
        if self.output.playlist != HlsPlaylist::Event && !self.output.vod {
            // Date ranges a live window has left behind are never rendered again.
            let oldest = self.renditions.iter().filter_map(|r| r.live.segments().next()?.date_ms).min();
            if let Some(oldest) = oldest {
                self.dateranges.retain(|d| d.start_ms + u64::try_from(d.duration.as_millis()).unwrap_or(0) >= oldest);
            }
        }
        self.write_live(i)?;
        if !self.master_written && self.renditions.iter().all(|r| !r.live.is_empty()) {
            self.write_master()?;
        }
        Ok(())
    }

    fn write_live(&self, i: usize) -> Result<(), Error> {
        let Some(r) = self.renditions.get(i) else { return Ok(()) };
        if r.live.is_empty() {
            return Ok(());
        }
        write_atomic(&r.dir.join(INDEX), &r.live.render(&self.dateranges))
    }

    fn write_master(&mut self) -> Result<(), Error> {
        let variants: Vec<Variant> = self
            .renditions
            .iter()
            .enumerate()
            .map(|(i, r)| Variant {
                // Declared bitrates plus a fifth for MPEG-TS overhead and the encoder's
                // overshoot: players pick a variant by it.
                bandwidth: (u64::from(r.size.video_kbps) * 1000 + u64::from(self.audio_bps)) * 6 / 5,
                width: r.size.width,
                height: r.size.height,
                fps: self.fps,
                codecs: format!("{},mp4a.40.2", avc1_of(&r.video_pad)),
                uri: format!("{i}/{INDEX}"),
            })
            .collect();
        write_atomic(&self.output.dir.join(MASTER), &playlist::render_multivariant(&variants))?;
        self.master_written = true;
        Ok(())
    }
}

/// The RFC 6381 name of the H.264 a rendition carries, from its caps (h264parse fills in
/// profile and level); High 4.0 (what x264 makes up to 1080p30) before caps are known.
fn avc1_of(pad: &gst::Pad) -> String {
    pad.current_caps()
        .and_then(|caps| {
            let s = caps.structure(0)?;
            playlist::avc1_codec(s.get::<&str>("profile").ok()?, s.get::<&str>("level").ok()?)
        })
        .unwrap_or_else(|| "avc1.640028".to_string())
}
