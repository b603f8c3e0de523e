//! Composite jobs: the compositor's side of [`crate::recording`].
//!
//! ```text
//! REST start (composite) → store: job `starting`, kind `composite`, with a tap number
//!   → <data-dir>/compositor/jobs/<job id>.json (a CompositorJob: tap, size, MP4 directory)
//!   → signaling admin `start_recording {room_id, recording_id, tap, reader: "compositor"}`
//! compositor stdout (CompositorEvent lines, read by the supervisor)
//!   started        → job `running`, webhook beam.started.success
//!   file_closed    → asset `room-composite` + webhook beam.recording.success
//!   failed         → job `failed` with the reason, webhook beam.failure, taps stopped, file removed
//!   finished       → job `completed`, webhook beam.stopped.success
//!   keyframe_wanted → signaling admin `request_keyframe` (as for the recorder)
//! REST stop / session end → job `stopping`, the job file removed (the compositor closes the
//!   outputs and says `finished`), admin `stop_recording`.
//! ```
//!
//! The job file stays while the job runs, so a restarted compositor takes the job up again,
//! with a new MP4 part; both parts become assets.

use std::path::Path;
use std::time::Duration;

use schema::compositor::{CompositorEvent, CompositorJob, HlsSpec, Mp4Spec};
pub use schema::compositor::{JobLayout, JobSettings, Resolution, default_ladder};
use schema::compositor::{PlaylistType, RenditionSpec};
use serde_json::Value;
use serde_json::json;
use store::recording::{self as rec, Recording};
use tracing::{debug, info, warn};

use crate::recording::{Recorder, RecordingError};

/// How long after a stop a composite job is called completed if the compositor never says it
/// finished (it was down): closing a 720p job's outputs takes well under a second.
pub const FINISH_WAIT: Duration = Duration::from_secs(15);

/// HLS segment length. One second keeps the start (REST start → first playable segment) and
/// the latency of a player three segments behind the live edge low; the price is a keyframe
/// every second (a few percent more bits at the same quality).
pub const SEGMENT_SECONDS: u32 = 1;

/// Segments in a live playlist unless the template says otherwise: 8 s of window, enough for
/// a player three segments behind the edge to ride out a slow fetch.
pub const PLAYLIST_SEGMENTS: u32 = 8;

pub use schema::compositor::{MAX_HEIGHT, MAX_WIDTH, MIN_SIDE};

/// The HLS settings a template's first `hlsDestinations` entry gives, checked.
pub fn template_hls(destinations: &Value) -> Result<JobSettings, String> {
    let mut s = JobSettings { layers: default_ladder(), ..Default::default() };
    let Some(d) = destinations.get("hlsDestinations").and_then(Value::as_object).and_then(|m| m.values().next()) else {
        return Ok(s);
    };
    let bad = |m: &str| format!("the template's hlsDestinations: {m}");
    if let Some(layers) = d.get("layers").and_then(Value::as_array).filter(|l| !l.is_empty()) {
        if layers.len() > 3 {
            return Err(bad("at most 3 layers"));
        }
        s.layers = Vec::new();
        for l in layers {
            let n = |k: &str| l.get(k).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok());
            let (Some(width), Some(height)) = (n("width"), n("height")) else {
                return Err(bad("each layer needs width and height"));
            };
            if !(MIN_SIDE..=MAX_WIDTH).contains(&width) || !(MIN_SIDE..=MAX_HEIGHT).contains(&height) {
                return Err(bad(&format!("layer {width}×{height} out of {MIN_SIDE}..{MAX_WIDTH}×{MAX_HEIGHT}")));
            }
            let video_kbps = n("videoBitrate").unwrap_or(width * height / 400).clamp(100, 20_000);
            s.layers.push(RenditionSpec { width: width & !1, height: height & !1, video_kbps });
        }
        s.layers.sort_by_key(|l| std::cmp::Reverse(l.width * l.height));
    }
    if d.get("playlistType").and_then(Value::as_str) == Some("event") {
        s.playlist_type = PlaylistType::Event;
    }
    s.num_playlist_segments = d.get("numPlaylistSegments").and_then(Value::as_u64).map(|n| n.clamp(3, 60) as u32);
    s.hls_vod = d.pointer("/recording/hlsVod").and_then(Value::as_bool).unwrap_or(false);
    Ok(s)
}

/// How long a compositor job may run unless its template says otherwise (100ms's default).
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(4 * 3600);

/// A job's longest run: the template's `maxDuration` (seconds) for its kind (the recording
/// config's for a composite, the first HLS or RTMP destination's for a stream), else
/// [`DEFAULT_MAX_DURATION`].
pub fn max_duration(parts: &store::template::TemplateParts, kind: &str) -> Duration {
    parts
        .job_config(kind)
        .and_then(|c| c.get("maxDuration").and_then(Value::as_u64))
        .filter(|&s| s > 0)
        .map_or(DEFAULT_MAX_DURATION, Duration::from_secs)
}

/// A composite recording to start with each session, if the template's recording config says
/// `compositeRecording.browserComposite.autoStart` (its `width` and `height` if given).
pub fn auto_composite(recordings: &Value) -> Option<crate::recording::JobSpec> {
    let bc = recordings.get(0)?.pointer("/compositeRecording/browserComposite")?;
    if bc.get("autoStart").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let n = |k: &str| bc.get(k).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok());
    let resolution = match (n("width"), n("height")) {
        (Some(w), Some(h)) if (MIN_SIDE..=MAX_WIDTH).contains(&w) && (MIN_SIDE..=MAX_HEIGHT).contains(&h) => {
            Resolution { width: w & !1, height: h & !1 }
        }
        _ => Resolution { width: 1280, height: 720 },
    };
    Some(crate::recording::JobSpec {
        kind: rec::COMPOSITE,
        settings: JobSettings { resolution: Some(resolution), ..Default::default() },
    })
}

/// The RTMP URLs of the template's first `rtmpDestinations` entry (`rtmpUrls`).
pub fn template_rtmp_urls(destinations: &Value) -> Vec<String> {
    destinations
        .get("rtmpDestinations")
        .and_then(Value::as_object)
        .and_then(|m| m.values().next())
        .and_then(|d| d.get("rtmpUrls"))
        .and_then(Value::as_array)
        .map(|urls| urls.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The HLS playback URL of a job: control serves `<recordings>/<job id>/hls/` at `/hls/<job id>/`.
pub fn playback_url(base: &str, job_id: &str) -> String {
    format!("{}/hls/{job_id}/master.m3u8", base.trim_end_matches('/'))
}

/// Where a job's HLS output is written.
pub fn hls_dir(recorder: &Recorder, job_id: &str) -> std::path::PathBuf {
    recorder.dir.join(job_id).join("hls")
}

fn job_path(recorder: &Recorder, id: &str) -> std::path::PathBuf {
    recorder.jobs_dir.join(format!("{id}.json"))
}

/// Whether the compositor has the job's file (it is running, or about to).
pub fn has_job(recorder: &Recorder, id: &str) -> bool {
    job_path(recorder, id).exists()
}

/// The compositor's job file for a job, from its kind and settings.
pub fn job_file(recorder: &Recorder, job: &Recording) -> CompositorJob {
    let settings: JobSettings = serde_json::from_value(job.spec.clone()).unwrap_or_default();
    let size = settings.size();
    let mp4 = (job.kind == rec::COMPOSITE || (job.kind == rec::RTMP && settings.recording))
        .then(|| Mp4Spec { dir: recorder.dir.join(&job.id).to_string_lossy().into_owned(), part_seconds: 3600 });
    let hls = (job.kind == rec::HLS).then(|| HlsSpec {
        dir: hls_dir(recorder, &job.id).to_string_lossy().into_owned(),
        renditions: if settings.layers.is_empty() { default_ladder() } else { settings.layers.clone() },
        segment_seconds: SEGMENT_SECONDS,
        playlist_type: settings.playlist_type,
        playlist_segments: settings.num_playlist_segments.unwrap_or(PLAYLIST_SEGMENTS),
        vod: settings.hls_vod,
    });
    CompositorJob {
        job_id: job.id.clone(),
        tap: job.tap,
        room_id: job.room_id.clone(),
        width: size.width,
        height: size.height,
        mp4,
        hls,
        rtmp: if job.kind == rec::RTMP { settings.rtmp_urls } else { Vec::new() },
        paused: settings.paused,
        layout: settings.layout,
    }
}

/// Writes a job's file for the compositor (atomically: write, then rename).
pub fn put_job(recorder: &Recorder, job: &Recording) -> Result<(), RecordingError> {
    let spec = job_file(recorder, job);
    let err = |what: &str, e: std::io::Error| RecordingError::JobFile(format!("{what}: {e}"));
    std::fs::create_dir_all(&recorder.jobs_dir)
        .map_err(|e| err(&format!("cannot create {}", recorder.jobs_dir.display()), e))?;
    let text = serde_json::to_vec_pretty(&spec).map_err(|e| RecordingError::JobFile(e.to_string()))?;
    let path = job_path(recorder, &job.id);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(|e| err(&format!("cannot write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| err(&format!("cannot rename to {}", path.display()), e))
}

/// Hands an HLS job a timed metadata cue (the compositor applies and deletes the file).
pub fn put_cue(recorder: &Recorder, job_id: &str, payload: &str, duration_seconds: u32) -> Result<(), RecordingError> {
    let cue = schema::compositor::Cue { payload: payload.to_owned(), duration_seconds };
    schema::compositor::write_cue(&recorder.jobs_dir, job_id, &cue)
        .map(drop)
        .map_err(|e| RecordingError::JobFile(format!("cannot write a cue in {}: {e}", recorder.jobs_dir.display())))
}

/// Removes a job's file: the compositor finishes the job.
pub fn remove_job(recorder: &Recorder, id: &str) {
    match std::fs::remove_file(job_path(recorder, id)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(job = %id, error = %e, "cannot remove the compositor's job file"),
    }
}

/// The asset path of an output file: relative to the recordings directory.
fn relative(recorder: &Recorder, path: &str) -> String {
    Path::new(path).strip_prefix(&recorder.dir).map_or_else(|_| path.to_owned(), |p| p.to_string_lossy().into_owned())
}

/// `starting` → `running`; a job already further on (stopping, ended) stays where it is.
fn mark_running(s: &store::Store, id: &str, now_ms: i64) -> Result<(), store::StoreError> {
    if s.recording_by_id(id)?.is_some_and(|r| r.status == rec::STARTING) {
        s.set_recording_status(id, rec::RUNNING, "", None, now_ms)?;
    }
    Ok(())
}

impl Recorder {
    /// One line of the compositor's stdout.
    pub async fn handle_compositor_line(&self, line: &str) {
        let ev: CompositorEvent = match serde_json::from_str(line) {
            Ok(ev) => ev,
            Err(e) => {
                warn!(error = %e, line, "unreadable line from the compositor");
                return;
            }
        };
        let now = || util::unix_ms() as i64;
        let (job_id, result) = match ev {
            CompositorEvent::Started { job_id } => {
                info!(job = %job_id, "compositor job started");
                // An HLS job is running once players can open it (`hls_ready`).
                let id = job_id.clone();
                let r = self
                    .db(move |s| match s.recording_by_id(&id)? {
                        Some(job) if job.kind != rec::HLS => mark_running(s, &id, now()),
                        _ => Ok(()),
                    })
                    .await;
                (job_id, r)
            }
            CompositorEvent::HlsReady { job_id } => {
                info!(job = %job_id, "HLS stream has its first segment");
                let id = job_id.clone();
                (job_id, self.db(move |s| mark_running(s, &id, now())).await)
            }
            CompositorEvent::FileClosed { job_id, file } => {
                let path = relative(self, &file.path);
                let metadata = json!({ "resolution": { "width": file.width, "height": file.height } });
                let extra = json!({
                    "size": file.size,
                    "duration": file.duration_ms / 1000,
                    "recording_path": path,
                });
                let id = job_id.clone();
                let r = self
                    .db(move |s| {
                        // A file can close before `started` was handled.
                        mark_running(s, &id, now())?;
                        s.add_asset(&id, &path, file.size as i64, file.duration_ms as i64, &metadata, extra, now())
                            .map(drop)
                    })
                    .await;
                (job_id, r)
            }
            CompositorEvent::Failed { job_id, reason } => {
                warn!(job = %job_id, %reason, "compositor job failed");
                remove_job(self, &job_id);
                let id = job_id.clone();
                let job = self
                    .db(move |s| {
                        let job = s.recording_by_id(&id)?;
                        s.set_recording_status(&id, rec::FAILED, &reason, None, now())?;
                        Ok(job)
                    })
                    .await;
                if let Ok(Some(job)) = &job {
                    let params = json!({ "room_id": job.room_id, "recording_id": job.id });
                    let _ = self.admin.call("stop_recording", params).await;
                }
                (job_id, job.map(drop))
            }
            CompositorEvent::Finished { job_id } => {
                info!(job = %job_id, "compositor job finished");
                let id = job_id.clone();
                (job_id, self.db(move |s| s.set_recording_status(&id, rec::COMPLETED, "", None, now()).map(drop)).await)
            }
            CompositorEvent::Rtmp { job_id, url, connected, error } => {
                if connected {
                    info!(job = %job_id, %url, "RTMP destination connected");
                } else {
                    warn!(job = %job_id, %url, error = error.as_deref().unwrap_or(""), "RTMP destination failed; retrying");
                }
                return;
            }
            CompositorEvent::KeyframeWanted { meta } => {
                let params =
                    json!({ "room_id": meta.room_id, "recording_id": meta.recording_id, "track_id": meta.track_id });
                if let Err(e) = self.admin.call("request_keyframe", params).await {
                    debug!(job = %meta.recording_id, track = %meta.track_id, error = %e, "request_keyframe");
                }
                return;
            }
        };
        if let Err(e) = result {
            warn!(job = %job_id, error = %e, "compositor job state not saved");
        }
        self.announce(&job_id).await;
    }

    /// Tells signaling a job's state, so the room's peers see it (the SDK's recording and
    /// streaming states). Signaling may be restarting: then the next change tells it.
    pub async fn announce(&self, job_id: &str) {
        let id = job_id.to_owned();
        let Ok(Some(job)) = self.db(move |s| s.recording_by_id(&id)).await else { return };
        let settings: JobSettings = serde_json::from_value(job.spec.clone()).unwrap_or_default();
        let params = json!({
            "room_id": job.room_id,
            "job": {
                "id": job.id,
                "kind": job.kind,
                "status": job.status,
                "created_at": job.created_at,
                "started_at": job.started_at,
                "started_by": job.started_by,
                "error": job.error,
                "playback_url": settings.playback_url,
                "rtmp_urls": settings.rtmp_urls,
                "recording": settings.recording,
                "hls_vod": settings.hls_vod,
                "paused": settings.paused,
                "playlist_type": settings.playlist_type,
            },
        });
        if let Err(e) = self.admin.call("job_state", params).await {
            debug!(job = %job_id, error = %e, "job_state not told to signaling");
        }
    }
}
