//! `/v2/recordings` and `/v2/recording-assets`: recording jobs and their files
//! ([`crate::recording`] does the work; these are the 100ms-shaped routes over it).
//!
//! A job is `{id, room_id, session_id, status, asset_types: ["room-composite"] or ["track"],
//! meeting_url, resolution (composite), recording_assets (get only), created_at, started_at,
//! started_by, stopped_at, stopped_by, updated_at, error}`; an asset `{id, job_id, room_id,
//! session_id, type: "room-composite" | "track", status, path, size, duration, created_at,
//! metadata}` (a composite's `{resolution}`, a track's `{track_id, stream_id, peer_id,
//! user_id, track_type, part, ...}`).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use store::recording::{self as rec, Asset, Recording};
use store::template::FieldError;

use super::body::{Field, Problems};
use super::jobs::{self, Family, common_json, filter_of, ms};
use super::{Mgmt, QueryMap, RestError, RestResult, db, page_of, paginated, parse_request};
use crate::composite::{JobSettings, Resolution};
use crate::http::AppState;
use crate::recording::{DEFAULT_PRESIGN, JobSpec, RecordingError};

/// The recording family: track and composite jobs.
pub const RECORDINGS: Family =
    Family { kinds: &[rec::TRACK, rec::COMPOSITE], noun: "recording", shape: recording_json };

/// The REST shape of a job.
pub fn recording_json(r: &Recording, assets: Option<&[Asset]>) -> Value {
    let mut v = common_json(r);
    v["asset_types"] = json!([rec::asset_type(&r.kind)]);
    if r.kind == rec::COMPOSITE {
        v["paused"] = jobs::paused_json(r);
    }
    if let Some(res) = r.spec.get("resolution") {
        v["resolution"] = res.clone();
    }
    if let Some(a) = assets {
        v["recording_assets"] = Value::Array(a.iter().map(asset_json).collect());
    }
    v
}

/// The REST shape of an asset.
pub fn asset_json(a: &Asset) -> Value {
    json!({
        "id": a.id,
        "job_id": a.job_id,
        "room_id": a.room_id,
        "session_id": a.session_id,
        "type": a.kind,
        "status": a.status,
        "path": a.path,
        "size": a.size,
        "duration": a.duration,
        "created_at": ms(Some(a.created_at)),
        "thumbnails": [],
        "metadata": a.metadata,
    })
}

impl From<RecordingError> for RestError {
    fn from(e: RecordingError) -> RestError {
        match e {
            RecordingError::NotActive => RestError::not_found("room is not active"),
            e @ RecordingError::AlreadyRunning(_) => RestError::new(StatusCode::CONFLICT, e.to_string()),
            e @ RecordingError::JobFile(_) => RestError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            RecordingError::Store(e) => e.into(),
            RecordingError::Signaling(e) => e.into(),
        }
    }
}

/// The start body (100ms's fields, and `kind`, ours).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StartBody {
    /// Recorded in the job; the layout is ours (no page is opened).
    meeting_url: Field<String>,
    resolution: Field<Resolution>,
    audio_only: Field<bool>,
    /// 100ms's storage prefix; files stay in the recordings directory.
    destination: Field<String>,
    transcription: Field<Value>,
    /// Not 100ms's: `"track"` starts a track recording on demand (100ms only starts those
    /// from the template); `"composite"` is the default.
    kind: Field<String>,
    /// Not 100ms's: `"grid"` (the default) or `"active-speaker"`.
    layout: Field<String>,
}

/// The job a start body asks for, or every problem with it.
fn job_spec(body: StartBody) -> Result<JobSpec, RestError> {
    let mut problems = Problems::default();
    let kind = problems.optional_if(
        body.kind,
        "kind",
        |k| k == "composite" || k == "track",
        "must be \"composite\" or \"track\"",
    );
    let common = jobs::common_start(&mut problems, body.meeting_url, body.destination, body.transcription, body.layout);
    let resolution = jobs::resolution(&mut problems, body.resolution);
    if problems.optional(body.audio_only, "audio_only", "must be true or false") == Some(true) {
        problems.add("audio_only", "audio-only composite recording is not offered: record the tracks instead");
    }
    problems.finish()?;
    Ok(match kind.as_deref() {
        Some("track") => JobSpec::track(),
        _ => JobSpec {
            kind: rec::COMPOSITE,
            settings: JobSettings {
                meeting_url: common.meeting_url,
                layout: common.layout,
                resolution: Some(resolution.unwrap_or(Resolution { width: 1280, height: 720 })),
                ..Default::default()
            },
        },
    })
}

/// `POST /v2/recordings/room/{room_id}/start`: a composite recording of the active session
/// (1280×720 unless `resolution` says otherwise), or with `kind: "track"` a track recording.
pub async fn start(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(room_id): Path<String>, body: Bytes) -> RestResult {
    let spec = job_spec(parse_request::<StartBody>(&body)?)?;
    let room = jobs::room_of(&st, &ws, &room_id).await?;
    let job = st.recorder.start(&ws.id, &room.id, "", spec).await?;
    Ok(Json(recording_json(&job, None)))
}

/// `POST /v2/recordings/room/{room_id}/pause` and `/resume`: the room's running composite
/// recording leaves out what happens while paused; 404 when none runs, 400 when it is in that
/// state already.
async fn pause_or_resume(st: AppState, ws: store::Workspace, room_id: String, paused: bool) -> RestResult {
    let room = jobs::room_of(&st, &ws, &room_id).await?;
    let (wsid, rid) = (ws.id.clone(), room.id.clone());
    let job = db(&st, move |s| {
        let f = store::recording::RecordingFilter {
            room_id: Some(rid),
            kinds: vec![rec::COMPOSITE],
            status: Some(rec::RUNNING.into()),
            ..Default::default()
        };
        Ok(s.recordings(&wsid, &f, &store::Page::first(10))?.data.into_iter().next())
    })
    .await?
    .ok_or_else(|| RestError::not_found("no composite recording is running in this room"))?;
    let job = jobs::set_paused(&st, &job, paused).await?;
    Ok(Json(recording_json(&job, None)))
}

pub async fn pause(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(room_id): Path<String>) -> RestResult {
    pause_or_resume(st, ws, room_id, true).await
}

pub async fn resume(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(room_id): Path<String>) -> RestResult {
    pause_or_resume(st, ws, room_id, false).await
}

/// `POST /v2/recordings/room/{room_id}/stop`: stops every running recording of the room.
pub async fn stop_room(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(room_id): Path<String>) -> RestResult {
    jobs::stop_room(&st, &ws, &room_id, &RECORDINGS).await
}

/// `POST /v2/recordings/{recording_id}/stop`.
pub async fn stop_one(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    jobs::stop_one(&st, &ws, &id, &RECORDINGS).await
}

/// `GET /v2/recordings` (filters `room_id`, `session_id`, `status`).
pub async fn list(State(st): State<AppState>, Mgmt(ws): Mgmt, q: QueryMap) -> RestResult {
    jobs::list(&st, ws, &q, &RECORDINGS).await
}

/// `GET /v2/recordings/{recording_id}`, with its assets.
pub async fn get_one(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    jobs::get_one(&st, &ws, &id, &RECORDINGS).await
}

/// `GET /v2/recording-assets` (filters `room_id`, `session_id`, `status`).
pub async fn list_assets(State(st): State<AppState>, Mgmt(ws): Mgmt, q: QueryMap) -> RestResult {
    let page = page_of(&q)?;
    let filter = filter_of(&q, &[]);
    let limit = page.limit;
    let listing = db(&st, move |s| Ok(s.assets(&ws.id, &filter, &page)?)).await?;
    Ok(paginated(limit, listing.data.iter().map(asset_json).collect(), listing.last))
}

/// `GET /v2/recording-assets/{asset_id}`.
pub async fn get_asset(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    let a = db(&st, move |s| s.asset(&ws.id, &id)?.ok_or_else(|| RestError::not_found("asset not found"))).await?;
    Ok(Json(asset_json(&a)))
}

/// `GET /v2/recording-assets/{asset_id}/presigned-url?presign_duration=<s>`: `{id, path, url,
/// expiry}`, a URL on this server that serves the file without a token until `expiry`.
pub async fn presigned_url(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: QueryMap,
) -> RestResult {
    let secs = match q.get("presign_duration").filter(|s| !s.is_empty()) {
        None => DEFAULT_PRESIGN.as_secs() as i64,
        Some(v) => v.parse::<i64>().ok().filter(|v| (1..=7 * 24 * 3600).contains(v)).ok_or_else(|| {
            RestError::invalid(vec![FieldError::new("presign_duration", "must be 1 to 604800 seconds")])
        })?,
    };
    let secret = ws.secret.clone();
    let a = db(&st, move |s| s.asset(&ws.id, &id)?.ok_or_else(|| RestError::not_found("asset not found"))).await?;
    let expiry = store::time::unix_ms(std::time::SystemTime::now()) / 1000 + secs;
    let sig = crate::recording::sign(&secret, &a.id, expiry);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let url = format!("https://{host}/v2/recording-assets/{}/download?expires={expiry}&signature={sig}", a.id);
    Ok(Json(json!({ "id": a.id, "path": a.path, "url": url, "expiry": store::time::format_secs(expiry) })))
}

/// `GET /v2/recording-assets/{asset_id}/download?expires=&signature=`: the file, for a URL from
/// `presigned-url` (no management token: the signature is the permission).
pub async fn download(State(st): State<AppState>, Path(id): Path<String>, q: QueryMap) -> Result<Response, RestError> {
    let forbidden = || RestError::new(StatusCode::FORBIDDEN, "signature invalid or expired");
    let expires: i64 = q.get("expires").and_then(|v| v.parse().ok()).ok_or_else(forbidden)?;
    let sig = q.get("signature").cloned().ok_or_else(forbidden)?;
    let found = db(&st, move |s| {
        // The asset names its workspace through its job; the secret is that workspace's.
        let Some(job_id) = s.asset_job(&id)? else { return Ok(None) };
        let Some(job) = s.recording_by_id(&job_id)? else { return Ok(None) };
        let Some(ws) = s.workspace(&job.workspace_id)? else { return Ok(None) };
        Ok(s.asset(&ws.id, &id)?.map(|a| (a, ws.secret)))
    })
    .await?;
    let Some((asset, secret)) = found else { return Err(forbidden()) };
    let now = store::time::unix_ms(std::time::SystemTime::now()) / 1000;
    if !crate::recording::verify(&secret, &asset.id, expires, &sig, now) {
        return Err(forbidden());
    }
    let path = st.recorder.file_of(&asset.path).ok_or_else(forbidden)?;
    let data = tokio::fs::read(&path).await.map_err(|_| RestError::not_found("the file is gone"))?;
    let mime = match asset.path.rsplit('.').next() {
        Some("ogg") => "audio/ogg",
        Some("mp4") => "video/mp4",
        Some("m3u8") => "application/vnd.apple.mpegurl",
        _ => "video/webm",
    };
    let name = asset.path.rsplit('/').next().unwrap_or("recording").to_owned();
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        Body::from(data),
    )
        .into_response())
}
