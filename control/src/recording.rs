//! Recording jobs: control decides, signaling taps, the router copies, the recorder (track
//! jobs) or the compositor (composite jobs, [`crate::composite`]) writes and reports back here.
//!
//! ```text
//! REST start / session start with trackRecording.enabled
//!   → store: job `starting` (with a tap number)
//!   → signaling admin `start_recording {room_id, recording_id, tap}` → router `start_tap` per track
//! recorder stdout (RecorderEvent lines, read by the supervisor)
//!   track_started → job `running`, webhook track.recording.started.success
//!   part_closed   → asset (type track) + webhook track.recording.success
//!   failed        → job `failed` with the reason, webhook recording.failed, taps stopped
//!   keyframe_wanted → signaling admin `request_keyframe {room_id, recording_id, track_id}`
//!                   → router `start_tap` again for that track (which sends the publisher a PLI)
//! REST stop / session end → job `stopping`, admin `stop_recording`; the recorder closes the
//!   files (part_closed) and the job is `completed` [`SETTLE`] later.
//! ```
//!
//! Downloads: `presigned-url` signs `<asset id>:<expiry>` with the workspace secret (HMAC-SHA256);
//! the `download` route checks the signature and the expiry and serves the file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use schema::recording::RecorderEvent;
use serde_json::{Value, json};
use store::Store;
use store::recording::{self as rec, Recording};
use tracing::{debug, info, warn};
use util::LockExt;

use crate::signaling_admin::{AdminClient, AdminError};

/// How long after a stop the job is called completed: the recorder closes its files as soon as
/// the router's stop records arrive (milliseconds), this is margin.
pub const SETTLE: Duration = Duration::from_secs(2);

/// How often sessions are checked for auto-start (and ended sessions for their jobs' end).
pub const POLL: Duration = Duration::from_secs(1);

/// Default and longest lifetime of a presigned download URL.
pub const DEFAULT_PRESIGN: Duration = Duration::from_secs(3 * 24 * 3600);

/// Why a start or stop could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("room is not active")]
    NotActive,
    #[error("a recording is already running in this room ({0})")]
    AlreadyRunning(String),
    #[error("cannot hand the job to the compositor: {0}")]
    JobFile(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("signaling: {0}")]
    Signaling(#[from] AdminError),
}

/// What a job makes: its kind (`store::recording::{TRACK, COMPOSITE, HLS, RTMP}`) and, for the
/// compositor's kinds, its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub kind: &'static str,
    pub settings: crate::composite::JobSettings,
}

impl JobSpec {
    pub fn track() -> JobSpec {
        JobSpec { kind: rec::TRACK, settings: Default::default() }
    }
}

/// What one poll of the jobs found to do.
#[derive(Debug, Default)]
struct TickPlan {
    /// Jobs to start with their sessions: (workspace, room, what).
    start: Vec<(String, String, JobSpec)>,
    /// Jobs to stop, and why (100ms's stop reasons).
    end: Vec<(Recording, &'static str)>,
    /// Live compositor jobs, for the hand-over check.
    compositor: Vec<Recording>,
}

/// Which process reads a job's tap.
fn reader_of(kind: &str) -> &'static str {
    if kind == rec::TRACK { "recorder" } else { "compositor" }
}

/// Shared by the REST handlers, the event readers and the auto-start loop.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub store: Arc<Mutex<Store>>,
    pub admin: Arc<AdminClient>,
    /// Where the recorder and the compositor write (`<data-dir>/recordings`).
    pub dir: PathBuf,
    /// Where composite jobs are put for the compositor (`<data-dir>/compositor/jobs`).
    pub jobs_dir: PathBuf,
    /// `https://host:port` of control's HTTPS server, for HLS playback URLs.
    pub playback_base: String,
    /// Compositor jobs whose start or stop this process has handled (see `tick`).
    pub handled: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl Recorder {
    pub(crate) async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, store::StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store.lock_unpoisoned()))
            .await
            .map_err(|e| store::StoreError::BadValue(format!("store task: {e}")))?
    }

    /// Starts a job for the room's active session; one of each kind at a time per room.
    pub async fn start(
        &self,
        workspace_id: &str,
        room_id: &str,
        started_by: &str,
        spec: JobSpec,
    ) -> Result<Recording, RecordingError> {
        let (ws, room, by) = (workspace_id.to_owned(), room_id.to_owned(), started_by.to_owned());
        let kind = spec.kind;
        let mut settings = spec.settings;
        let base = self.playback_base.clone();
        let job = self
            .db(move |s| {
                let Some((session_id, _)) = s.active_session(&room)? else { return Ok(Err(RecordingError::NotActive)) };
                let live = s.recordings(
                    &ws,
                    &rec::RecordingFilter { room_id: Some(room.clone()), kinds: vec![kind], ..Default::default() },
                    &store::Page::first(100),
                )?;
                if let Some(r) = live.data.iter().find(|r| rec::is_live(&r.status)) {
                    return Ok(Err(RecordingError::AlreadyRunning(r.id.clone())));
                }
                let mut job =
                    s.create_recording(&ws, &room, &session_id, &by, kind, &json!({}), util::unix_ms() as i64)?;
                // The playback URL names the job, so it is known only now.
                if kind == rec::HLS {
                    settings.playback_url = Some(crate::composite::playback_url(&base, &job.id));
                }
                job.spec = serde_json::to_value(&settings).unwrap_or_default();
                s.set_recording_spec(&job.id, &job.spec)?;
                Ok(Ok(job))
            })
            .await??;
        self.dispatch(&job).await?;
        Ok(job)
    }

    /// An HLS job another process created (signaling, for a peer's `hls-start`) gets what only
    /// control knows: its playback URL, and the ladder of its room's template.
    async fn complete_hls(&self, job: &Recording) -> Result<Recording, RecordingError> {
        let mut settings: crate::composite::JobSettings = serde_json::from_value(job.spec.clone()).unwrap_or_default();
        if job.kind != rec::HLS || (settings.playback_url.is_some() && !settings.layers.is_empty()) {
            return Ok(job.clone());
        }
        let (base, mut job) = (self.playback_base.clone(), job.clone());
        self.db(move |s| {
            if settings.layers.is_empty() {
                let destinations = s
                    .room(&job.room_id)?
                    .and_then(|r| s.template(&r.template_id).ok().flatten())
                    .map(|t| t.parts.destinations)
                    .unwrap_or(Value::Null);
                let vod = settings.hls_vod;
                let from_template = crate::composite::template_hls(&destinations).unwrap_or_default();
                settings.layers = if from_template.layers.is_empty() {
                    crate::composite::default_ladder()
                } else {
                    from_template.layers
                };
                settings.playlist_type = from_template.playlist_type;
                settings.num_playlist_segments = from_template.num_playlist_segments;
                settings.hls_vod = vod || from_template.hls_vod;
            }
            settings.playback_url.get_or_insert_with(|| crate::composite::playback_url(&base, &job.id));
            job.spec = serde_json::to_value(&settings).unwrap_or_default();
            s.set_recording_spec(&job.id, &job.spec)?;
            Ok(job)
        })
        .await
        .map_err(RecordingError::from)
    }

    /// Hands a `starting` job to its reader: the compositor's job file first (it must know the
    /// job before the tap's records arrive), then signaling taps the room.
    pub async fn dispatch(&self, job: &Recording) -> Result<(), RecordingError> {
        let job = &self.complete_hls(job).await?;
        let fail = |reason: String| {
            let id = job.id.clone();
            async move {
                let _ = self
                    .db(move |s| s.set_recording_status(&id, rec::FAILED, &reason, None, util::unix_ms() as i64))
                    .await;
            }
        };
        if job.kind != rec::TRACK
            && let Err(e) = crate::composite::put_job(self, job)
        {
            fail(e.to_string()).await;
            return Err(e);
        }
        let params =
            json!({ "room_id": job.room_id, "recording_id": job.id, "tap": job.tap, "reader": reader_of(&job.kind) });
        if let Err(e) = self.admin.call("start_recording", params).await {
            crate::composite::remove_job(self, &job.id);
            fail(format!("cannot start: {e}")).await;
            return Err(match e {
                AdminError::Refused { status: 404, .. } => RecordingError::NotActive,
                e => RecordingError::Signaling(e),
            });
        }
        info!(recording = %job.id, kind = %job.kind, room = %job.room_id, "job starting");
        self.announce(&job.id).await;
        Ok(())
    }

    /// Stops a job: `stopping` now, `completed` once its files are closed (the recorder's
    /// within [`SETTLE`]; the compositor says when, within [`crate::composite::FINISH_WAIT`]).
    /// `reason` is 100ms's: `client request`, `max duration reached`, `room ended`.
    pub async fn stop(&self, job: &Recording, by: &str, reason: &str) -> Result<(), RecordingError> {
        let (id, by, reason) = (job.id.clone(), by.to_owned(), reason.to_owned());
        let moved = self
            .db(move |s| {
                let Some(mut job) = s.recording_by_id(&id)? else { return Ok(false) };
                if rec::is_live(&job.status) && job.status != rec::STOPPING {
                    job.spec["stop_reason"] = json!(reason);
                    s.set_recording_spec(&id, &job.spec)?;
                }
                s.set_recording_status(&id, rec::STOPPING, "", Some(&by), util::unix_ms() as i64)
            })
            .await?;
        if !moved {
            return Ok(());
        }
        let params = json!({ "room_id": job.room_id, "recording_id": job.id });
        if let Err(e) = self.admin.call("stop_recording", params).await {
            // The room ended (its producers, and so the taps, are gone already) or signaling
            // restarted; either way nothing is being tapped any more.
            debug!(recording = %job.id, error = %e, "stop_recording");
        }
        self.announce(&job.id).await;
        self.wind_down(job);
        Ok(())
    }

    /// Pauses or resumes a running job's recording (a composite's MP4 or a live stream's VOD
    /// leaves the paused time out):
    /// the job's settings say so, and its file, which the compositor follows.
    pub async fn set_paused(&self, job: &Recording, paused: bool) -> Result<Recording, RecordingError> {
        let id = job.id.clone();
        let job = self
            .db(move |s| {
                let Some(mut job) = s.recording_by_id(&id)? else { return Ok(None) };
                job.spec["paused"] = json!(paused);
                s.set_recording_spec(&id, &job.spec)?;
                Ok(Some(job))
            })
            .await?
            .ok_or(RecordingError::NotActive)?;
        crate::composite::put_job(self, &job)?;
        info!(recording = %job.id, paused, "recording paused or resumed");
        self.announce(&job.id).await;
        Ok(job)
    }

    /// After a stop: the compositor's job file removed; `completed` once the files are closed
    /// (the compositor says so) or at the latest after the settling time.
    pub(crate) fn wind_down(&self, job: &Recording) {
        self.handled.lock_unpoisoned().insert(format!("stop {}", job.id));
        let settle = if job.kind == rec::TRACK {
            SETTLE
        } else {
            crate::composite::remove_job(self, &job.id);
            crate::composite::FINISH_WAIT
        };
        let this = self.clone();
        let id = job.id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(settle).await;
            let job = id.clone();
            let moved =
                this.db(move |s| s.set_recording_status(&id, rec::COMPLETED, "", None, util::unix_ms() as i64)).await;
            if moved.unwrap_or(false) {
                this.announce(&job).await;
            }
        });
    }

    /// One line of the recorder's stdout.
    pub async fn handle_line(&self, line: &str) {
        let ev: RecorderEvent = match serde_json::from_str(line) {
            Ok(ev) => ev,
            Err(e) => {
                warn!(error = %e, line, "unreadable line from the recorder");
                return;
            }
        };
        let result = match ev {
            RecorderEvent::TrackStarted { meta, .. } => {
                let metadata = serde_json::to_value(&meta).unwrap_or_default();
                let id = meta.recording_id.clone();
                let r = self
                    .db(move |s| {
                        let moved =
                            s.set_recording_status(&meta.recording_id, rec::RUNNING, "", None, util::unix_ms() as i64)?;
                        s.recording_track_started(&meta.recording_id, &metadata, util::unix_ms() as i64)?;
                        Ok(moved)
                    })
                    .await;
                if r.as_ref().is_ok_and(|moved| *moved) {
                    self.announce(&id).await;
                }
                r.map(drop)
            }
            RecorderEvent::PartClosed { meta, part } => {
                let mut metadata = serde_json::to_value(&meta).unwrap_or_default();
                metadata["part"] = json!(part.part);
                metadata["started_at_ms"] = json!(part.started_at_ms);
                metadata["synced"] = json!(part.synced);
                metadata["frames"] = json!(part.frames);
                let extra = json!({
                    "size": part.size,
                    "duration": part.duration_ms as f64 / 1000.0,
                    "recording_path": part.path,
                });
                self.db(move |s| {
                    // A part may close before `track_started` was seen (a very short track).
                    s.set_recording_status(&meta.recording_id, rec::RUNNING, "", None, util::unix_ms() as i64)?;
                    s.add_asset(
                        &meta.recording_id,
                        &part.path,
                        part.size as i64,
                        part.duration_ms as i64,
                        &metadata,
                        extra,
                        util::unix_ms() as i64,
                    )
                    .map(|_| ())
                })
                .await
            }
            RecorderEvent::Failed { recording_id, reason } => {
                warn!(recording = %recording_id, %reason, "recording failed");
                let id = recording_id.clone();
                let job = self
                    .db(move |s| {
                        let job = s.recording_by_id(&id)?;
                        s.set_recording_status(&id, rec::FAILED, &reason, None, util::unix_ms() as i64)?;
                        Ok(job)
                    })
                    .await;
                if let Ok(Some(job)) = &job {
                    let params = json!({ "room_id": job.room_id, "recording_id": job.id });
                    let _ = self.admin.call("stop_recording", params).await;
                    self.announce(&job.id).await;
                }
                job.map(|_| ())
            }
            RecorderEvent::KeyframeWanted { meta } => {
                let params = json!({
                    "room_id": meta.room_id,
                    "recording_id": meta.recording_id,
                    "track_id": meta.track_id,
                });
                if let Err(e) = self.admin.call("request_keyframe", params).await {
                    // The track or the room may be gone already; the recorder asks again.
                    debug!(recording = %meta.recording_id, track = %meta.track_id, error = %e, "request_keyframe");
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            warn!(error = %e, "recording state not saved");
        }
    }

    /// Auto-start for sessions whose template says `trackRecording.enabled`, and the end of
    /// jobs whose session ended. Runs until `shutdown`.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = crate::shutting_down(&mut shutdown) => return,
            }
            if let Err(e) = self.tick().await {
                debug!(error = %e, "recording poll");
            }
        }
    }

    async fn tick(&self) -> Result<(), RecordingError> {
        let now = util::unix_ms() as i64;
        let plan = self
            .db(move |s| {
                let mut plan = TickPlan::default();
                // Auto-start: a track recording, and a composite, per the room's template.
                for kind in [rec::TRACK, rec::COMPOSITE] {
                    for (ws, room_id, _session) in s.sessions_without_job(kind)? {
                        let Some(room) = s.room(&room_id)? else { continue };
                        let Some(t) = s.template(&room.template_id)? else { continue };
                        let spec = if kind == rec::TRACK {
                            track_recording_enabled(&t.parts.recordings).then(JobSpec::track)
                        } else {
                            crate::composite::auto_composite(&t.parts.recordings)
                        };
                        plan.start.extend(spec.map(|spec| (ws, room_id, spec)));
                    }
                }
                for job in s.live_recordings()? {
                    let active = s.active_session(&job.room_id)?;
                    if active.as_ref().is_none_or(|(sid, _)| *sid != job.session_id) && job.status != rec::STOPPING {
                        plan.end.push((job, "room ended"));
                        continue;
                    }
                    if job.kind == rec::TRACK {
                        continue;
                    }
                    let limit = s
                        .room(&job.room_id)?
                        .and_then(|r| s.template(&r.template_id).ok().flatten())
                        .map_or(crate::composite::DEFAULT_MAX_DURATION, |t| {
                            crate::composite::max_duration(&t.parts, &job.kind)
                        });
                    // A huge `maxDuration` must not wrap into a negative limit (stopping the job at once).
                    let limit_ms = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
                    let over = job.started_at.is_some_and(|at| now.saturating_sub(at) > limit_ms);
                    if over && job.status == rec::RUNNING {
                        plan.end.push((job, "max duration reached"));
                    } else {
                        plan.compositor.push(job);
                    }
                }
                Ok(plan)
            })
            .await?;
        // Compositor jobs another process started or stopped through the store (signaling, for
        // a peer's hls-start or rtmp-stop): hand them over, or wind them down, once.
        for job in plan.compositor {
            let has_file = crate::composite::has_job(self, &job.id);
            if job.status == rec::STARTING
                && !has_file
                && self.handled.lock_unpoisoned().insert(format!("start {}", job.id))
            {
                let _ = self.dispatch(&job).await;
            } else if job.status == rec::STOPPING
                && has_file
                && self.handled.lock_unpoisoned().insert(format!("stop {}", job.id))
            {
                self.announce(&job.id).await;
                self.wind_down(&job);
            }
        }
        for (ws, room, spec) in plan.start {
            let kind = spec.kind;
            match self.start(&ws, &room, "", spec).await {
                Ok(job) => info!(recording = %job.id, %room, kind, "recording auto-started with the session"),
                Err(RecordingError::NotActive | RecordingError::AlreadyRunning(_)) => {}
                Err(e) => warn!(%room, kind, error = %e, "auto-start of a recording"),
            }
        }
        for (job, reason) in plan.end {
            info!(recording = %job.id, kind = %job.kind, reason, "stopping a job");
            let _ = self.stop(&job, "", reason).await;
        }
        Ok(())
    }

    /// The file of an asset path, refusing anything outside the recordings directory.
    pub fn file_of(&self, rel: &str) -> Option<PathBuf> {
        let p = Path::new(rel);
        if p.is_absolute() || p.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return None;
        }
        Some(self.dir.join(p))
    }
}

/// `recordings[0].trackRecording.enabled` of a template.
pub fn track_recording_enabled(recordings: &Value) -> bool {
    recordings.get(0).and_then(|c| c.get("trackRecording")).and_then(|t| t.get("enabled")).and_then(Value::as_bool)
        == Some(true)
}

/// The download signature of an asset until `expires` (Unix seconds).
pub fn sign(secret: &str, asset_id: &str, expires: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("{asset_id}:{expires}").as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `sig` signs `asset_id` until `expires`, and that time has not passed.
pub fn verify(secret: &str, asset_id: &str, expires: i64, sig: &str, now_secs: i64) -> bool {
    if now_secs > expires {
        return false;
    }
    let Some(bytes) = (0..sig.len())
        .step_by(2)
        .map(|i| sig.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, format!("{asset_id}:{expires}").as_bytes(), &bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_the_asset_and_the_expiry() {
        let sig = sign("secret", "a1", 1000);
        assert!(verify("secret", "a1", 1000, &sig, 999));
        assert!(!verify("secret", "a1", 1000, &sig, 1001), "expired");
        assert!(!verify("secret", "a2", 1000, &sig, 999), "another asset");
        assert!(!verify("secret", "a1", 1001, &sig, 999), "another expiry");
        assert!(!verify("other", "a1", 1000, &sig, 999), "another secret");
        assert!(!verify("secret", "a1", 1000, "zz", 999), "not hex");
    }

    #[test]
    fn the_template_flag_is_read_from_the_first_config() {
        assert!(track_recording_enabled(&json!([{"trackRecording": {"enabled": true}}])));
        assert!(!track_recording_enabled(&json!([{"trackRecording": {"enabled": false}}])));
        assert!(!track_recording_enabled(&json!([])));
        assert!(!track_recording_enabled(&json!({"trackRecording": {"enabled": true}})));
    }
}
