//! Recording and streaming as the SDK sees them: the states its selectors show
//! (`selectRecordingState`, `selectRTMPState`, `selectHLSState`), and the requests a peer starts
//! and stops jobs with (`rtmp-start`, `rtmp-stop`, `hls-start`, `hls-stop`,
//! `hls-timed-metadata`).
//!
//! The jobs themselves belong to control: they live in the store's `recordings` table, and
//! control hands a `starting` compositor job to the compositor and winds down a `stopping` one.
//! So a peer's start is a row created here (`starting`, `started_by` the peer), and a stop is
//! the row set `stopping`; the job's taps are ended once control says the job ended. Control
//! tells the room every state change with the admin op `job_state`, which becomes the 100ms
//! notifications:
//!
//! | job | notification |
//! |---|---|
//! | `track` | `on-record-update {type: "sfu"}` |
//! | `composite` | `on-record-update {type: "Browser"}` |
//! | `rtmp` | `on-rtmp-update`, and `on-record-update {type: "Browser"}` when it records |
//! | `hls` | `on-hls-update {variants: [{url, state, ...}]}`, and `on-record-update {type: "HLS"}` with `hls_vod` |
//!
//! Job states become the SDK's: `starting` → `initialised`, `running` → `started`, `stopping`
//! and `completed` → `stopped`, `failed` → `failed` with `error {code, message}`. A peer that
//! joins gets the same states in the `room` of its `peer-list` (and of `room-state`), read from
//! the store's live jobs, so they survive a signaling restart.

use std::time::Duration;

use schema::compositor::{Cue, JobSettings, MAX_CUE_PAYLOAD, MAX_CUE_SECONDS, MAX_RTMP_URLS, PlaylistType, Resolution};
use serde::Deserialize;
use serde_json::{Value, json};
use store::recording::{self as rec, Recording};
use tracing::{info, warn};
use util::LockExt;

use super::rpc::Param;
use super::{Refusal, Room};
use crate::rpc::code;

/// At most this many cues in one `hls-timed-metadata`.
pub const MAX_CUES_PER_REQUEST: usize = 16;

/// The error code a failed job carries in its notification (the SDK shows it; it is not a
/// response, so nothing retries on it).
const JOB_FAILED: i64 = 500;

/// A job as peers are told about it: from control's `job_state`, or a store row.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct JobState {
    pub id: String,
    pub kind: String,
    pub status: String,
    /// Unix ms.
    pub created_at: Option<i64>,
    pub started_at: Option<i64>,
    pub started_by: String,
    pub error: String,
    pub playback_url: Option<String>,
    pub rtmp_urls: Vec<String>,
    pub recording: bool,
    pub hls_vod: bool,
    pub playlist_type: PlaylistType,
}

impl JobState {
    pub fn of(r: &Recording) -> JobState {
        let settings: JobSettings = serde_json::from_value(r.spec.clone()).unwrap_or_default();
        JobState {
            id: r.id.clone(),
            kind: r.kind.clone(),
            status: r.status.clone(),
            created_at: Some(r.created_at),
            started_at: r.started_at,
            started_by: r.started_by.clone(),
            error: r.error.clone(),
            playback_url: settings.playback_url,
            rtmp_urls: settings.rtmp_urls,
            recording: settings.recording,
            hls_vod: settings.hls_vod,
            playlist_type: settings.playlist_type,
        }
    }

    /// The SDK's name for the job's state (its recording and streaming states share these).
    pub fn sdk_state(&self) -> &'static str {
        match self.status.as_str() {
            rec::STARTING => "initialised",
            rec::RUNNING => "started",
            rec::FAILED => "failed",
            _ => "stopped",
        }
    }

    /// Whether the SDK counts the job as running (it does from `initialised`).
    fn active(&self) -> bool {
        matches!(self.status.as_str(), rec::STARTING | rec::RUNNING)
    }

    fn error(&self) -> Option<Value> {
        (self.status == rec::FAILED).then(|| {
            let message = if self.error.is_empty() { "the job failed" } else { self.error.as_str() };
            json!({ "code": JOB_FAILED, "message": message })
        })
    }

    /// `{state, started_at?, error?}`: the body of an `on-record-update` or `on-rtmp-update`.
    fn state_body(&self) -> Value {
        let mut v = json!({ "state": self.sdk_state(), "enabled": self.active() });
        if let Some(t) = self.started_at.filter(|_| self.active()) {
            v["started_at"] = json!(t);
        }
        if let Some(e) = self.error() {
            v["error"] = e;
        }
        v
    }

    fn hls_recording(&self) -> Value {
        json!({ "hls_vod": self.hls_vod, "single_file_per_layer": false })
    }

    /// The HLS job's one variant (the SDK shows an `initialised` one without its URL).
    fn variant(&self) -> Value {
        let mut v = json!({
            "url": self.playback_url.clone().unwrap_or_default(),
            "state": self.sdk_state(),
            "playlist_type": if self.playlist_type == PlaylistType::Event { "dvr" } else { "no-dvr" },
            "stream_type": "composite",
        });
        if let Some(t) = self.created_at {
            v["initialised_at"] = json!(t);
        }
        if let Some(t) = self.started_at {
            v["started_at"] = json!(t);
        }
        v
    }

    /// The body of `on-hls-update`, and the RoomState's `streaming.hls`.
    fn hls_body(&self) -> Value {
        let mut v = json!({ "enabled": self.active(), "variants": [self.variant()] });
        if let Some(e) = self.error() {
            v["error"] = e;
        }
        if self.hls_vod {
            v["hls_recording"] = self.hls_recording();
        }
        v
    }

    /// The `on-record-update` of an HLS job that keeps a VOD, and the RoomState's
    /// `recording.hls`.
    fn hls_record_body(&self) -> Value {
        let mut v = self.state_body();
        if let Some(t) = self.created_at {
            v["initialised_at"] = json!(t);
        }
        v["hls_recording"] = self.hls_recording();
        v["config"] = self.hls_recording();
        v
    }

    /// Whether the job records what the SDK calls a browser recording.
    fn is_browser_recording(&self) -> bool {
        self.kind == rec::COMPOSITE || (self.kind == rec::RTMP && self.recording)
    }

    /// The notifications that tell peers the job's state.
    pub fn notifications(&self) -> Vec<(&'static str, Value)> {
        let typed = |kind: &str, mut body: Value| {
            body["type"] = json!(kind);
            body
        };
        let mut out = Vec::new();
        match self.kind.as_str() {
            rec::TRACK => out.push(("on-record-update", typed("sfu", self.state_body()))),
            rec::COMPOSITE => {}
            rec::RTMP => out.push(("on-rtmp-update", self.state_body())),
            rec::HLS => {
                out.push(("on-hls-update", self.hls_body()));
                if self.hls_vod {
                    out.push(("on-record-update", typed("HLS", self.hls_record_body())));
                }
            }
            _ => {}
        }
        if self.is_browser_recording() {
            out.push(("on-record-update", typed("Browser", self.state_body())));
        }
        out
    }
}

/// The RoomState's `recording` and `streaming` for a room's live jobs (oldest first): per slot
/// the last job that runs, else the last one.
pub fn room_state_parts(jobs: &[JobState]) -> (Value, Value) {
    fn pick(jobs: &[JobState], f: impl Fn(&JobState) -> bool) -> Option<&JobState> {
        let mut chosen: Option<&JobState> = None;
        for j in jobs.iter().filter(|j| f(j)) {
            if j.active() || !chosen.is_some_and(JobState::active) {
                chosen = Some(j);
            }
        }
        chosen
    }
    let none = || json!({ "enabled": false, "state": "none" });
    let body = |j: Option<&JobState>| j.map_or_else(none, JobState::state_body);
    let sfu = body(pick(jobs, |j| j.kind == rec::TRACK));
    let browser = body(pick(jobs, JobState::is_browser_recording));
    let hls = pick(jobs, |j| j.kind == rec::HLS);
    let hls_recording = hls.filter(|j| j.hls_vod).map_or_else(none, JobState::hls_record_body);
    let rtmp = pick(jobs, |j| j.kind == rec::RTMP);
    let streaming_hls = hls.map_or_else(|| json!({ "enabled": false, "variants": [] }), JobState::hls_body);
    let enabled = rtmp.is_some_and(JobState::active) || hls.is_some_and(JobState::active);
    (
        json!({ "sfu": sfu, "browser": browser, "hls": hls_recording }),
        json!({ "enabled": enabled, "rtmp": body(rtmp), "hls": streaming_hls }),
    )
}

/// `rtmp-start {meeting_url?, rtmp_urls?, record, resolution?}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RtmpStartParams {
    pub meeting_url: Param<String>,
    pub rtmp_urls: Param<Vec<String>>,
    pub record: Param<bool>,
    pub resolution: Param<Resolution>,
}

/// One variant of `hls-start` (only the first one's meeting URL is used: the compositor makes
/// one stream).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct HlsVariantParams {
    pub meeting_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct HlsRecordingParams {
    pub hls_vod: Option<bool>,
    pub single_file_per_layer: Option<bool>,
}

/// `hls-start {variants?, hls_recording?}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct HlsStartParams {
    pub variants: Param<Vec<HlsVariantParams>>,
    pub hls_recording: Param<HlsRecordingParams>,
}

/// One cue of `hls-timed-metadata`.
#[derive(Debug, Deserialize)]
pub(super) struct MetadataObj {
    pub payload: String,
    pub duration: f64,
}

/// `hls-timed-metadata {metadata_objs, metadata_id?}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct TimedMetadataParams {
    pub metadata_objs: Param<Vec<MetadataObj>>,
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    Refusal::new(code::INTERNAL, format!("the platform database failed: {e}"))
}

/// What the SDK calls each kind, for messages.
fn noun(kind: &str) -> &'static str {
    match kind {
        rec::COMPOSITE => "recording",
        rec::RTMP => "RTMP stream",
        rec::HLS => "HLS stream",
        _ => "track recording",
    }
}

impl Room {
    /// The room's live jobs of the current session, oldest first; none without a database.
    pub(super) fn live_jobs(&self) -> Vec<Recording> {
        let Some(store) = &self.env.store else { return Vec::new() };
        let jobs = match store.lock_unpoisoned().live_recordings_of_room(&self.template.workspace_id, &self.id) {
            Ok(jobs) => jobs,
            Err(e) => {
                warn!(room = %self.id, error = %e, "cannot read the room's jobs");
                return Vec::new();
            }
        };
        let session = self.session.as_ref().map(|(id, _)| id.as_str());
        jobs.into_iter().filter(|j| session.is_none_or(|s| s == j.session_id)).collect()
    }

    /// How long the session outlives its last peer: the longest `autoStopTimeout` of the
    /// template among the session's running compositor jobs (`None`: it ends at once).
    pub(super) fn job_linger(&self) -> Option<Duration> {
        self.live_jobs()
            .iter()
            .filter(|j| j.kind != rec::TRACK && j.status != rec::STOPPING)
            .filter_map(|j| self.template.parts.auto_stop_timeout(&j.kind))
            .max()
    }

    /// The `recording` and `streaming` of the room's RoomState.
    pub(super) fn job_room_state(&self) -> (Value, Value) {
        let jobs: Vec<JobState> = self.live_jobs().iter().map(JobState::of).collect();
        room_state_parts(&jobs)
    }

    /// Tells every joined peer a job's state (control's `job_state`, or a change made here).
    pub(super) fn push_job_state(&self, job: &JobState) {
        // A browser recording that ends while another job still records (a composite and an
        // RTMP stream that records) would show the recording stopped: tell its real state.
        let mut notes = job.notifications();
        if !job.active() && job.is_browser_recording() {
            let other = self
                .live_jobs()
                .iter()
                .map(JobState::of)
                .any(|j| j.id != job.id && j.is_browser_recording() && j.active());
            if other {
                notes.retain(|(method, body)| !(*method == "on-record-update" && body["type"] == "Browser"));
            }
        }
        for (method, body) in notes {
            self.push_all(method, &body);
        }
    }

    /// Creates a job in the store for control to start; refused while one of `kind` is live.
    fn create_job(&mut self, peer_id: &str, kind: &'static str, settings: &JobSettings) -> Result<Value, Refusal> {
        let Some(store) = self.env.store.clone() else {
            return Err(Refusal::new(code::NOT_IMPLEMENTED, "recording and streaming need the platform database"));
        };
        let Some((session, _)) = self.session.clone() else {
            return Err(Refusal::new(code::CONFLICT, "the room has no session"));
        };
        let job = {
            let s = store.lock_unpoisoned();
            let live = s.live_recordings_of_room(&self.template.workspace_id, &self.id).map_err(internal)?;
            if let Some(j) = live.iter().find(|j| j.kind == kind && j.session_id == session) {
                return Err(Refusal::new(
                    code::CONFLICT,
                    format!("a {} is already {} in this room (job {})", noun(kind), j.status, j.id),
                ));
            }
            let spec = serde_json::to_value(settings).map_err(internal)?;
            let now = util::unix_ms() as i64;
            s.create_recording(&self.template.workspace_id, &self.id, &session, peer_id, kind, &spec, now)
                .map_err(internal)?
        };
        info!(room = %self.id, peer = %peer_id, job = %job.id, kind, "job asked for by a peer");
        self.push_job_state(&JobState::of(&job));
        Ok(json!({ "job_id": job.id }))
    }

    /// Stops the room's live jobs of `kinds`: `stopping` (control winds them down; their taps
    /// end when control says they ended, [`Room::job_state`]). `None` when there was none.
    async fn stop_jobs(&mut self, peer_id: &str, kinds: &[&str]) -> Result<Option<usize>, Refusal> {
        let Some(store) = self.env.store.clone() else {
            return Err(Refusal::new(code::NOT_IMPLEMENTED, "recording and streaming need the platform database"));
        };
        let live: Vec<Recording> = self.live_jobs().into_iter().filter(|j| kinds.contains(&j.kind.as_str())).collect();
        if live.is_empty() {
            return Ok(None);
        }
        let mut stopped = Vec::new();
        {
            let s = store.lock_unpoisoned();
            let now = util::unix_ms() as i64;
            for j in live.iter().filter(|j| j.status != rec::STOPPING) {
                if s.set_recording_status(&j.id, rec::STOPPING, "", Some(peer_id), now).map_err(internal)? {
                    stopped.push(s.recording_by_id(&j.id).map_err(internal)?.unwrap_or_else(|| j.clone()));
                }
            }
        }
        for j in &stopped {
            info!(room = %self.id, peer = %peer_id, job = %j.id, kind = %j.kind, "job stopped by a peer");
            self.push_job_state(&JobState::of(j));
        }
        Ok(Some(live.len()))
    }

    /// Control's `job_state`: the peers are told, and the taps of a job that ended are ended.
    ///
    /// A peer's stop leaves the taps running until then: the compositor fails a job whose
    /// inputs end under a running pipeline (a released mixer pad leaves its source not linked),
    /// and it finishes the job only once control removes the job file, up to a tick later. With
    /// the taps ended last, the compositor closes its outputs with every input still there.
    pub(super) async fn job_state(&mut self, job: JobState) {
        self.push_job_state(&job);
        if !rec::is_live(&job.status) && self.recordings.iter().any(|a| a.recording_id == job.id) {
            let _ = self.stop_recording(Some(job.id.clone())).await;
        }
    }

    /// `rtmp-start`: with URLs an RTMP stream (`rtmpStreaming`), without them and with
    /// `record: true` a composite recording (`browserRecording`).
    pub(super) fn rtmp_start(&mut self, peer_id: &str, params: RtmpStartParams) -> Result<Value, Refusal> {
        let meeting_url =
            params.meeting_url.or_refuse(code::BAD_REQUEST, "meeting_url must be a string")?.unwrap_or_default();
        let urls =
            params.rtmp_urls.or_refuse(code::BAD_REQUEST, "rtmp_urls must be a list of URLs")?.unwrap_or_default();
        let record = params.record.or_refuse(code::BAD_REQUEST, "record must be true or false")?.unwrap_or(false);
        let resolution = params.resolution.or_refuse(code::BAD_REQUEST, "resolution must be {width, height}")?;
        if let Some(r) = resolution
            && !r.is_valid()
        {
            return Err(Refusal::new(
                code::BAD_REQUEST,
                format!(
                    "resolution must be even, from {} to {}×{}",
                    schema::compositor::MIN_SIDE,
                    schema::compositor::MAX_WIDTH,
                    schema::compositor::MAX_HEIGHT
                ),
            ));
        }
        let settings = JobSettings { meeting_url, resolution, recording: record, ..Default::default() };
        if urls.is_empty() {
            if !record {
                return Err(Refusal::new(code::BAD_REQUEST, "rtmp-start needs rtmp_urls, or record: true"));
            }
            self.require(peer_id, |p| p.browser_recording, "browserRecording")?;
            return self.create_job(peer_id, rec::COMPOSITE, &settings);
        }
        self.require(peer_id, |p| p.rtmp_streaming, "rtmpStreaming")?;
        if urls.len() > MAX_RTMP_URLS {
            return Err(Refusal::new(code::BAD_REQUEST, format!("at most {MAX_RTMP_URLS} RTMP URLs")));
        }
        if let Some(bad) = urls.iter().find(|u| !schema::compositor::rtmp_url_ok(u)) {
            return Err(Refusal::new(code::BAD_REQUEST, format!("not an rtmp:// or rtmps:// URL with a host: {bad}")));
        }
        self.create_job(peer_id, rec::RTMP, &JobSettings { rtmp_urls: urls, ..settings })
    }

    /// `rtmp-stop`: the room's RTMP stream and composite recording, those the role may stop.
    pub(super) async fn rtmp_stop(&mut self, peer_id: &str) -> Result<Value, Refusal> {
        let rtmp = self.require(peer_id, |p| p.rtmp_streaming, "rtmpStreaming");
        let record = self.require(peer_id, |p| p.browser_recording, "browserRecording");
        let kinds: Vec<&str> = [(rtmp.is_ok(), rec::RTMP), (record.is_ok(), rec::COMPOSITE)]
            .into_iter()
            .filter_map(|(ok, k)| ok.then_some(k))
            .collect();
        if kinds.is_empty() {
            return Err(rtmp.err().unwrap_or_else(|| Refusal::new(code::FORBIDDEN, "not allowed")));
        }
        match self.stop_jobs(peer_id, &kinds).await? {
            Some(n) => Ok(json!({ "stopped": n })),
            None => Err(Refusal::new(code::NOT_FOUND, "no RTMP stream or recording is running in this room")),
        }
    }

    /// `hls-start`: an HLS stream (`hlsStreaming`); control adds the template's ladder and the
    /// playback URL when it starts it.
    pub(super) fn hls_start(&mut self, peer_id: &str, params: HlsStartParams) -> Result<Value, Refusal> {
        self.require(peer_id, |p| p.hls_streaming, "hlsStreaming")?;
        let variants = params.variants.or_refuse(code::BAD_REQUEST, "variants must be a list")?.unwrap_or_default();
        let recording =
            params.hls_recording.or_refuse(code::BAD_REQUEST, "hls_recording must be an object")?.unwrap_or_default();
        if recording.single_file_per_layer == Some(true) {
            return Err(Refusal::new(
                code::BAD_REQUEST,
                "single_file_per_layer is not offered: the VOD is one playlist",
            ));
        }
        let settings = JobSettings {
            meeting_url: variants.into_iter().next().and_then(|v| v.meeting_url).unwrap_or_default(),
            hls_vod: recording.hls_vod.unwrap_or(false),
            ..Default::default()
        };
        self.create_job(peer_id, rec::HLS, &settings)
    }

    /// `hls-stop`: the room's HLS stream.
    pub(super) async fn hls_stop(&mut self, peer_id: &str) -> Result<Value, Refusal> {
        self.require(peer_id, |p| p.hls_streaming, "hlsStreaming")?;
        match self.stop_jobs(peer_id, &[rec::HLS]).await? {
            Some(n) => Ok(json!({ "stopped": n })),
            None => Err(Refusal::new(code::NOT_FOUND, "no HLS stream is running in this room")),
        }
    }

    /// `hls-timed-metadata`: one cue per object for the room's running HLS stream.
    pub(super) fn hls_timed_metadata(&mut self, peer_id: &str, params: TimedMetadataParams) -> Result<Value, Refusal> {
        self.require(peer_id, |p| p.hls_streaming, "hlsStreaming")?;
        let objs = params
            .metadata_objs
            .or_refuse(code::BAD_REQUEST, "metadata_objs must be a list of {payload, duration}")?
            .unwrap_or_default();
        if objs.is_empty() || objs.len() > MAX_CUES_PER_REQUEST {
            return Err(Refusal::new(
                code::BAD_REQUEST,
                format!("metadata_objs needs 1 to {MAX_CUES_PER_REQUEST} {{payload, duration}}"),
            ));
        }
        let mut cues = Vec::new();
        for o in objs {
            if o.payload.is_empty() || o.payload.chars().count() > MAX_CUE_PAYLOAD {
                return Err(Refusal::new(
                    code::BAD_REQUEST,
                    format!("a payload must be a string of 1 to {MAX_CUE_PAYLOAD} characters"),
                ));
            }
            if !(o.duration.is_finite() && o.duration >= 1.0 && o.duration <= f64::from(MAX_CUE_SECONDS)) {
                return Err(Refusal::new(
                    code::BAD_REQUEST,
                    format!("a duration must be 1 to {MAX_CUE_SECONDS} seconds"),
                ));
            }
            cues.push(Cue { payload: o.payload, duration_seconds: o.duration.round() as u32 });
        }
        let Some(dir) = self.env.compositor_jobs_dir.clone() else {
            return Err(Refusal::new(code::NOT_IMPLEMENTED, "timed metadata needs the compositor's jobs directory"));
        };
        let live: Vec<Recording> = self.live_jobs().into_iter().filter(|j| j.kind == rec::HLS).collect();
        let Some(job) = live.iter().find(|j| j.status == rec::RUNNING) else {
            return Err(match live.first() {
                Some(j) => Refusal::new(code::CONFLICT, format!("the HLS stream is {}, not running", j.status)),
                None => Refusal::new(code::NOT_FOUND, "no HLS stream is running in this room"),
            });
        };
        for cue in &cues {
            schema::compositor::write_cue(&dir, &job.id, cue)
                .map_err(|e| Refusal::new(code::INTERNAL, format!("cannot hand the cue to the compositor: {e}")))?;
        }
        info!(room = %self.id, peer = %peer_id, job = %job.id, cues = cues.len(), "timed metadata sent");
        Ok(json!({ "job_id": job.id }))
    }
}
