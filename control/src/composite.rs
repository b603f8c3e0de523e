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

use schema::compositor::{CompositorEvent, CompositorJob, Mp4Spec};
use serde_json::json;
use store::recording::{self as rec, Recording};
use tracing::{debug, info, warn};

use crate::recording::{Recorder, RecordingError};

/// How long after a stop a composite job is called completed if the compositor never says it
/// finished (it was down): closing a 720p job's outputs takes well under a second.
pub const FINISH_WAIT: Duration = Duration::from_secs(15);

/// Composite output sizes accepted (100ms's are up to 1920×1080).
pub const MIN_SIDE: u32 = 160;
pub const MAX_WIDTH: u32 = 1920;
pub const MAX_HEIGHT: u32 = 1920;

fn job_path(recorder: &Recorder, id: &str) -> std::path::PathBuf {
    recorder.jobs_dir.join(format!("{id}.json"))
}

/// Writes a job's file for the compositor (atomically: write, then rename).
pub fn put_job(recorder: &Recorder, job: &Recording, width: u32, height: u32) -> Result<(), RecordingError> {
    let spec = CompositorJob {
        job_id: job.id.clone(),
        tap: job.tap,
        room_id: job.room_id.clone(),
        width,
        height,
        mp4: Some(Mp4Spec { dir: recorder.dir.join(&job.id).to_string_lossy().into_owned(), part_seconds: 3600 }),
        hls: None,
        rtmp: Vec::new(),
    };
    let err = |what: &str, e: std::io::Error| RecordingError::JobFile(format!("{what}: {e}"));
    std::fs::create_dir_all(&recorder.jobs_dir)
        .map_err(|e| err(&format!("cannot create {}", recorder.jobs_dir.display()), e))?;
    let text = serde_json::to_vec_pretty(&spec).map_err(|e| RecordingError::JobFile(e.to_string()))?;
    let path = job_path(recorder, &job.id);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(|e| err(&format!("cannot write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| err(&format!("cannot rename to {}", path.display()), e))
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
        let result = match ev {
            CompositorEvent::Started { job_id } => {
                info!(job = %job_id, "composite job running");
                self.db(move |s| mark_running(s, &job_id, now())).await
            }
            CompositorEvent::FileClosed { job_id, file } => {
                let path = relative(self, &file.path);
                let metadata = json!({ "resolution": { "width": file.width, "height": file.height } });
                let extra = json!({
                    "size": file.size,
                    "duration": file.duration_ms / 1000,
                    "recording_path": path,
                });
                self.db(move |s| {
                    // A file can close before `started` was handled.
                    mark_running(s, &job_id, now())?;
                    s.add_asset(&job_id, &path, file.size as i64, file.duration_ms as i64, &metadata, extra, now())
                        .map(drop)
                })
                .await
            }
            CompositorEvent::Failed { job_id, reason } => {
                warn!(job = %job_id, %reason, "composite job failed");
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
                job.map(drop)
            }
            CompositorEvent::Finished { job_id } => {
                info!(job = %job_id, "composite job finished");
                self.db(move |s| s.set_recording_status(&job_id, rec::COMPLETED, "", None, now()).map(drop)).await
            }
            CompositorEvent::HlsReady { job_id } => {
                info!(job = %job_id, "HLS stream has its first segment");
                Ok(())
            }
            CompositorEvent::Rtmp { job_id, url, connected, error } => {
                info!(job = %job_id, %url, connected, error = error.as_deref().unwrap_or(""), "RTMP destination");
                Ok(())
            }
            CompositorEvent::KeyframeWanted { meta } => {
                let params =
                    json!({ "room_id": meta.room_id, "recording_id": meta.recording_id, "track_id": meta.track_id });
                if let Err(e) = self.admin.call("request_keyframe", params).await {
                    debug!(job = %meta.recording_id, track = %meta.track_id, error = %e, "request_keyframe");
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            warn!(error = %e, "composite job state not saved");
        }
    }
}
