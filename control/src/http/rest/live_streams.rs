//! `/v2/live-streams`: HLS jobs (100ms's live streams), run by the compositor.
//!
//! A live stream is `{id, room_id, session_id, status, meeting_url, playback{url},
//! recording{hls_vod, single_file_per_layer}, created_at, started_at, started_by, stopped_at,
//! stopped_by, updated_at, error, recording_assets (get only)}`. It is `running` once its
//! first segment is written: `playback.url` then opens in any HLS player. The ladder, the
//! playlist type and its length come from the room template's first `hlsDestinations` entry
//! (`layers[{width, height, videoBitrate}]` in kbit/s, `playlistType` `live` or `event`,
//! `numPlaylistSegments`, `recording.hlsVod`); without one, 720p and 360p, live, 6 segments.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use store::recording::{self as rec, Asset, Recording};

use super::body::{Field, Problems};
use super::jobs::{self, Family, common_json};
use super::recordings::asset_json;
use super::{Mgmt, QueryMap, RestError, RestResult, db, parse_request};
use crate::composite::{JobSettings, template_hls};
use crate::http::AppState;
use crate::recording::JobSpec;

/// The live stream family: HLS jobs.
pub const LIVE_STREAMS: Family = Family { kinds: &[rec::HLS], noun: "live stream", shape: live_stream_json };

/// 100ms's limit on a timed metadata payload.
pub const MAX_PAYLOAD: usize = schema::compositor::MAX_CUE_PAYLOAD;

/// The REST shape of a live stream.
pub fn live_stream_json(r: &Recording, assets: Option<&[Asset]>) -> Value {
    let settings: JobSettings = serde_json::from_value(r.spec.clone()).unwrap_or_default();
    let mut v = common_json(r);
    v["playback"] = json!({ "url": settings.playback_url });
    v["recording"] = json!({ "hls_vod": settings.hls_vod, "single_file_per_layer": false });
    if settings.hls_vod {
        v["paused"] = jobs::paused_json(r);
    }
    v["layers"] = json!(settings.layers);
    if let Some(a) = assets {
        v["recording_assets"] = Value::Array(a.iter().map(asset_json).collect());
    }
    v
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StartBody {
    meeting_url: Field<String>,
    recording: Field<RecordingBody>,
    destination: Field<String>,
    transcription: Field<Value>,
    layout: Field<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RecordingBody {
    hls_vod: bool,
    single_file_per_layer: bool,
}

/// `POST /v2/live-streams/room/{room_id}/start`.
pub async fn start(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(room_id): Path<String>, body: Bytes) -> RestResult {
    let body: StartBody = parse_request(&body)?;
    let mut problems = Problems::default();
    let common = jobs::common_start(&mut problems, body.meeting_url, body.destination, body.transcription, body.layout);
    let recording =
        problems.optional(body.recording, "recording", "must be {hls_vod, single_file_per_layer} with true or false");
    if recording.as_ref().is_some_and(|r| r.single_file_per_layer) {
        problems.add("recording.single_file_per_layer", "single files per layer are not offered: use hls_vod");
    }
    problems.finish()?;
    let room = jobs::room_of(&st, &ws, &room_id).await?;
    let template_id = room.template_id.clone();
    let destinations =
        db(&st, move |s| Ok(s.template(&template_id)?.map(|t| t.parts.destinations).unwrap_or(Value::Null))).await?;
    let mut settings = template_hls(&destinations).map_err(RestError::bad_request)?;
    settings.meeting_url = common.meeting_url;
    settings.layout = common.layout;
    if let Some(r) = recording {
        settings.hls_vod = r.hls_vod;
    }
    let job = st.recorder.start(&ws.id, &room.id, "", JobSpec { kind: rec::HLS, settings }).await?;
    Ok(Json(live_stream_json(&job, None)))
}

/// `POST /v2/live-streams/room/{room_id}/stop`.
pub async fn stop_room(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(room_id): Path<String>) -> RestResult {
    jobs::stop_room(&st, &ws, &room_id, &LIVE_STREAMS).await
}

/// `POST /v2/live-streams/{id}/stop`.
pub async fn stop_one(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    jobs::stop_one(&st, &ws, &id, &LIVE_STREAMS).await
}

/// `GET /v2/live-streams` (filters `room_id`, `session_id`, `status`).
pub async fn list(State(st): State<AppState>, Mgmt(ws): Mgmt, q: QueryMap) -> RestResult {
    jobs::list(&st, ws, &q, &LIVE_STREAMS).await
}

/// `GET /v2/live-streams/{id}`.
pub async fn get_one(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    jobs::get_one(&st, &ws, &id, &LIVE_STREAMS).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CueBody {
    payload: Field<String>,
    duration: Field<u32>,
}

/// `POST /v2/live-streams/{id}/pause-recording` and `/resume-recording`: the stream's VOD
/// (`recording.hls_vod`) leaves out what happens while paused; the live playlists go on.
async fn pause_or_resume_recording(st: AppState, ws: store::Workspace, id: String, paused: bool) -> RestResult {
    let job = jobs::job_of(&st, &ws, &id, &LIVE_STREAMS).await?;
    if job.status != rec::RUNNING {
        return Err(RestError::bad_request(format!("live stream is {}, not running", job.status)));
    }
    let settings: JobSettings = serde_json::from_value(job.spec.clone()).unwrap_or_default();
    if !settings.hls_vod {
        return Err(RestError::bad_request(
            "the live stream is not recorded: start it with recording.hls_vod true (or the template's recording.hlsVod)",
        ));
    }
    let job = jobs::set_paused(&st, &job, paused).await?;
    Ok(Json(live_stream_json(&job, None)))
}

pub async fn pause_recording(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    pause_or_resume_recording(st, ws, id, true).await
}

pub async fn resume_recording(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    pause_or_resume_recording(st, ws, id, false).await
}

/// `POST /v2/live-streams/{id}/timed-metadata {payload, duration}`: an `#EXT-X-DATERANGE` in
/// the live playlists from now for `duration` seconds, the cue in `X-100MSLIVE-PAYLOAD` (base64
/// JSON, as 100ms's HLS player reads it).
pub async fn timed_metadata(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path(id): Path<String>,
    body: Bytes,
) -> RestResult {
    let body: CueBody = parse_request(&body)?;
    let mut problems = Problems::default();
    let payload = problems.optional_if(
        body.payload,
        "payload",
        |p| !p.is_empty() && p.chars().count() <= MAX_PAYLOAD,
        format!("must be a string of 1 to {MAX_PAYLOAD} characters"),
    );
    let duration =
        problems.optional_if(body.duration, "duration", |d| (1..=3600).contains(d), "must be 1 to 3600 seconds");
    if payload.is_none() && problems.is_empty() {
        problems.add("payload", "is required");
    }
    problems.finish()?;
    let job = jobs::job_of(&st, &ws, &id, &LIVE_STREAMS).await?;
    if job.status != rec::RUNNING {
        return Err(RestError::bad_request(format!("live stream is {}, not running", job.status)));
    }
    crate::composite::put_cue(&st.recorder, &job.id, &payload.unwrap_or_default(), duration.unwrap_or(5))?;
    Ok(Json(live_stream_json(&job, None)))
}
