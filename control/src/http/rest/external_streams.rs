//! `/v2/external-streams`: RTMP out (100ms's external streams), run by the compositor.
//!
//! An external stream is `{id, room_id, session_id, status, meeting_url, rtmp_urls, recording,
//! resolution, created_at, started_at, started_by, stopped_at, stopped_by, updated_at, error,
//! recording_assets (get only)}`. Each URL is streamed to on its own: one that refuses or
//! drops is retried with backoff and never stops the others; with `recording` the job also
//! writes MP4 parts (`room-composite` assets).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use store::recording::{self as rec, Asset, Recording};

use super::body::{Field, Problems};
use super::jobs::{self, Family, common_json};
use super::recordings::asset_json;
use super::{Mgmt, QueryMap, RestResult, db, parse_request};
use crate::composite::{JobSettings, Resolution};
use crate::http::AppState;
use crate::recording::JobSpec;
use schema::compositor::{MAX_RTMP_URLS as MAX_URLS, rtmp_url_ok};

/// The external stream family: RTMP jobs.
pub const EXTERNAL_STREAMS: Family =
    Family { kinds: &[rec::RTMP], noun: "external stream", shape: external_stream_json };

/// The REST shape of an external stream.
pub fn external_stream_json(r: &Recording, assets: Option<&[Asset]>) -> Value {
    let settings: JobSettings = serde_json::from_value(r.spec.clone()).unwrap_or_default();
    let mut v = common_json(r);
    v["rtmp_urls"] = json!(settings.rtmp_urls);
    v["recording"] = json!(settings.recording);
    v["resolution"] = json!(settings.size());
    if let Some(a) = assets {
        v["recording_assets"] = Value::Array(a.iter().map(asset_json).collect());
    }
    v
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StartBody {
    meeting_url: Field<String>,
    rtmp_urls: Field<Vec<String>>,
    recording: Field<bool>,
    resolution: Field<Resolution>,
    destination: Field<String>,
    layout: Field<String>,
}

/// `POST /v2/external-streams/room/{room_id}/start`.
pub async fn start(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(room_id): Path<String>, body: Bytes) -> RestResult {
    let body: StartBody = parse_request(&body)?;
    let mut problems = Problems::default();
    let common = jobs::common_start(&mut problems, body.meeting_url, body.destination, Field::Missing, body.layout);
    let urls = problems.optional_if(
        body.rtmp_urls,
        "rtmp_urls",
        |u| (1..=MAX_URLS).contains(&u.len()) && u.iter().all(|u| rtmp_url_ok(u)),
        format!("must be 1 to {MAX_URLS} rtmp:// or rtmps:// URLs"),
    );
    let recording = problems.optional(body.recording, "recording", "must be true or false").unwrap_or(false);
    let resolution = jobs::resolution(&mut problems, body.resolution);
    problems.finish()?;
    let room = jobs::room_of(&st, &ws, &room_id).await?;
    // Without URLs in the body, the template's first rtmpDestinations entry's.
    let urls = match urls {
        Some(u) => u,
        None => {
            let template_id = room.template_id.clone();
            let destinations =
                db(&st, move |s| Ok(s.template(&template_id)?.map(|t| t.parts.destinations).unwrap_or_default()))
                    .await?;
            let u = crate::composite::template_rtmp_urls(&destinations);
            if u.is_empty() || u.len() > MAX_URLS || !u.iter().all(|u| rtmp_url_ok(u)) {
                let mut p = Problems::default();
                p.add(
                    "rtmp_urls",
                    format!("is required (1 to {MAX_URLS} rtmp:// or rtmps:// URLs) unless the template's rtmpDestinations has them"),
                );
                return Err(p.into_error());
            }
            u
        }
    };
    let settings = JobSettings {
        meeting_url: common.meeting_url,
        layout: common.layout,
        rtmp_urls: urls,
        recording,
        resolution: Some(resolution.unwrap_or(Resolution { width: 1280, height: 720 })),
        ..Default::default()
    };
    let job = st.recorder.start(&ws.id, &room.id, "", JobSpec { kind: rec::RTMP, settings }).await?;
    Ok(Json(external_stream_json(&job, None)))
}

/// `POST /v2/external-streams/room/{room_id}/stop`.
pub async fn stop_room(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(room_id): Path<String>) -> RestResult {
    jobs::stop_room(&st, &ws, &room_id, &EXTERNAL_STREAMS).await
}

/// `POST /v2/external-streams/{id}/stop`.
pub async fn stop_one(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    jobs::stop_one(&st, &ws, &id, &EXTERNAL_STREAMS).await
}

/// `GET /v2/external-streams` (filters `room_id`, `session_id`, `status`).
pub async fn list(State(st): State<AppState>, Mgmt(ws): Mgmt, q: QueryMap) -> RestResult {
    jobs::list(&st, ws, &q, &EXTERNAL_STREAMS).await
}

/// `GET /v2/external-streams/{id}`.
pub async fn get_one(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    jobs::get_one(&st, &ws, &id, &EXTERNAL_STREAMS).await
}
