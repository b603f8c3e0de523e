//! A track's parts on disk: opening one (container header, manifest entry), writing audio
//! packets and video frames into it, noting its progress, and closing it, the same way whether
//! it rolls over (size, duration, new H.264 parameter sets) or its track ends.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};

use schema::codec::Codec;
use schema::recording::{PartInfo, RecorderEvent};
use tracing::debug;

use super::manifest::{Manifests, describe, safe_component};
use super::track::{Track, recordable};
use super::{Config, Stats};
use crate::depack::{Frame, Ordered, ParamSets};
use crate::mp4::{AvcTrack, Mp4Writer};
use crate::ogg::{OggOpusWriter, opus_packet_samples};
use crate::webm::{VideoTrack, WebmWriter};

/// How often an open part's size and duration are written to the manifest, so a part left by
/// a killed recorder is listed with what it holds, within this much.
const PROGRESS_EVERY_MS: u64 = 1_000;

pub(super) enum Mux {
    Ogg(OggOpusWriter),
    Webm(WebmWriter),
    Mp4(Mp4Writer),
}

/// The end of a container: what to append, what to write over earlier bytes, how long it is.
struct Ending {
    tail: Vec<u8>,
    /// (offset, bytes): WebM's duration over its placeholder.
    patch: Option<(u64, Vec<u8>)>,
    duration_ms: u64,
}

impl Mux {
    fn finish(&mut self) -> Ending {
        match self {
            Mux::Ogg(w) => {
                let mut tail = Vec::new();
                w.finish(&mut tail);
                Ending { tail, patch: None, duration_ms: w.total_ms() }
            }
            Mux::Webm(w) => {
                let (tail, patch) = w.finish();
                Ending { tail, patch: Some(patch), duration_ms: w.total_ms() }
            }
            Mux::Mp4(w) => Ending { tail: w.finish(), patch: None, duration_ms: w.total_ms() },
        }
    }
}

pub(super) struct Part {
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

impl Part {
    /// The manifest's entry for this part, as it stands.
    fn info(&self, duration_ms: u64, complete: bool) -> PartInfo {
        PartInfo {
            part: self.part,
            path: self.rel_path.clone(),
            size: self.size,
            duration_ms,
            frames: self.frames,
            started_at_ms: self.started_at_ms,
            synced: self.synced,
            complete,
        }
    }

    /// Past the configured size or duration.
    fn due(&self, cfg: &Config, clock_rate: u32) -> bool {
        let ms = (self.last_ts - self.base_ts) * 1000 / u64::from(clock_rate);
        self.size >= cfg.max_part_bytes || ms >= cfg.max_part_ms
    }

    fn append(&mut self, dir: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
        self.file.write_all(bytes).map_err(|e| describe("write", &dir.join(&self.rel_path), &e))?;
        self.size += bytes.len() as u64;
        Ok(())
    }
}

/// Where parts go and how big they get, and the manifests that list them.
#[derive(Debug)]
pub(super) struct Files {
    pub(super) cfg: Config,
    pub(super) manifests: Manifests,
}

impl Files {
    pub(super) fn new(cfg: Config) -> Files {
        let manifests = Manifests::new(cfg.dir.clone());
        Files { cfg, manifests }
    }

    /// Opens the track's next part, its first sample at RTP time `first_ts` (`ext_ts`
    /// unwrapped), and lists it.
    fn open_part(&mut self, t: &mut Track, now_ms: u64, first_ts: u32, ext_ts: u64) -> Result<(), String> {
        let manifest = self.manifests.load(&t.meta);
        let layer = t.layer.unwrap_or(0);
        let part_no = manifest
            .tracks
            .iter()
            .find(|m| m.meta.track_id == t.meta.track_id)
            .map_or(0, |m| m.parts.iter().map(|p| p.part).max().unwrap_or(0))
            + 1;
        let first_part = !manifest.tracks.iter().any(|m| m.meta.track_id == t.meta.track_id);
        let ext = recordable(t.codec).map_or("bin", |c| c.1);
        let rel = format!(
            "{}/{}/{}.{part_no}.{ext}",
            safe_component(&t.meta.recording_id),
            safe_component(&t.meta.peer_id),
            safe_component(&t.meta.track_id)
        );
        let path = self.cfg.dir.join(&rel);
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
                let (w, head) =
                    Mp4Writer::start(&track).map_err(|e| format!("cannot start {}: {e}", path.display()))?;
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
        let (started_at_ms, synced) = match t.wall_clock_of(layer, first_ts) {
            Some(ms) => (ms, true),
            None => (now_ms, false),
        };
        let part = Part {
            file,
            rel_path: rel,
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
        self.manifests.note_part(t, part.info(0, false))?;
        t.part = Some(part);
        if first_part {
            debug!(track = %t.meta.track_id, "first part opened");
        }
        Ok(())
    }

    /// Closes the track's open part, if any: the container's end written and synced, the part
    /// listed complete, and `PartClosed` reported. Both ways a part ends come here: rolling
    /// over to the next part, and the end of the track.
    pub(super) fn close_part(&mut self, t: &mut Track, events: &mut VecDeque<RecorderEvent>) -> Result<(), String> {
        let Some(mut part) = t.part.take() else { return Ok(()) };
        let path = self.cfg.dir.join(&part.rel_path);
        let end = part.mux.finish();
        part.append(&self.cfg.dir, &end.tail)?;
        if let Some((offset, patch)) = end.patch {
            part.file.seek(SeekFrom::Start(offset)).map_err(|e| describe("seek", &path, &e))?;
            part.file.write_all(&patch).map_err(|e| describe("write", &path, &e))?;
        }
        part.file.sync_data().map_err(|e| describe("sync", &path, &e))?;
        let info = part.info(end.duration_ms, true);
        self.manifests.note_part(t, info.clone())?;
        events.push_back(RecorderEvent::PartClosed { meta: t.meta.clone(), part: info });
        Ok(())
    }

    /// Writes an open part's size and duration to the manifest, at most every
    /// [`PROGRESS_EVERY_MS`].
    fn note_progress(&mut self, t: &mut Track, now_ms: u64) -> Result<(), String> {
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
        let info = part.info(duration_ms, false);
        self.manifests.note_part(t, info)
    }

    /// One Opus packet; a part past its size or duration is closed first.
    pub(super) fn write_audio(
        &mut self,
        events: &mut VecDeque<RecorderEvent>,
        t: &mut Track,
        now_ms: u64,
        p: &Ordered,
    ) -> Result<(), String> {
        let ext = t.unwrap_ts(p.timestamp);
        if t.part.as_ref().is_some_and(|part| part.due(&self.cfg, t.clock_rate)) {
            self.close_part(t, events)?;
        }
        if t.part.is_none() {
            self.open_part(t, now_ms, p.timestamp, ext)?;
        }
        let Some(part) = t.part.as_mut() else { return Ok(()) };
        let Some(samples) = opus_packet_samples(&p.payload) else { return Ok(()) };
        let since = ext.saturating_sub(part.base_ts) * 48_000 / u64::from(t.clock_rate);
        let Mux::Ogg(w) = &mut part.mux else { return Ok(()) };
        let mut out = Vec::with_capacity(p.payload.len() + 40);
        w.packet(&p.payload, since + samples, &mut out);
        part.append(&self.cfg.dir, &out)?;
        part.last_ts = part.last_ts.max(ext);
        part.frames += 1;
        self.note_progress(t, now_ms)
    }

    /// One video frame. A part due to roll over (size, duration, new H.264 parameter sets) is
    /// closed on the next keyframe, which opens the next; nothing is written before a keyframe.
    pub(super) fn write_video(
        &mut self,
        events: &mut VecDeque<RecorderEvent>,
        t: &mut Track,
        now_ms: u64,
        f: Frame,
        stats: &mut Stats,
    ) -> Result<(), String> {
        let ext = t.unwrap_ts(f.timestamp);
        if f.keyframe {
            if f.size.is_some() {
                t.size = f.size;
            }
            if f.params.is_some() {
                t.params = f.params.clone();
            }
            if t.part.as_ref().is_some_and(|part| part.due(&self.cfg, t.clock_rate)) {
                t.rotate_due = true;
            }
            // New parameter sets (a new resolution, say) do not fit the part's avcC: a new part.
            if let Some(part) = t.part.as_ref()
                && part.params.is_some()
                && part.params != f.params
            {
                t.rotate_due = true;
            }
            if t.rotate_due && t.part.is_some() {
                t.rotate_due = false;
                self.close_part(t, events)?;
            }
        }
        if t.part.is_none() {
            if !f.keyframe {
                return Ok(());
            }
            self.open_part(t, now_ms, f.timestamp, ext)?;
        }
        let Some(part) = t.part.as_mut() else { return Ok(()) };
        let ticks = ext.saturating_sub(part.base_ts);
        let out = match &mut part.mux {
            Mux::Webm(w) => w.frame(ticks * 1000 / u64::from(t.clock_rate), f.keyframe, &f.data),
            Mux::Mp4(w) => w.frame(ticks, f.keyframe, &f.data),
            Mux::Ogg(_) => return Ok(()),
        };
        if !out.is_empty() {
            part.append(&self.cfg.dir, &out)?;
        }
        part.last_ts = part.last_ts.max(ext);
        part.frames += 1;
        stats.frames_written += 1;
        // Due to roll over: the next keyframe closes the part (and one is asked for).
        if part.due(&self.cfg, t.clock_rate) {
            t.rotate_due = true;
        }
        self.note_progress(t, now_ms)
    }
}
