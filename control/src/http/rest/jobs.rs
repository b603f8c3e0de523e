//! What `/v2/recordings`, `/v2/live-streams` and `/v2/external-streams` share: each lists,
//! gets and stops the jobs of its own kinds ([`Family`]), in its own REST shape. The jobs
//! themselves are one table and one state machine ([`crate::recording`]).

use axum::Json;
use serde_json::{Value, json};
use store::recording::{self as rec, Asset, Recording, RecordingFilter};

use super::body::{Field, Problems};
use super::{QueryMap, RestError, RestResult, db, page_of, paginated};
use crate::composite::{JobLayout, MAX_HEIGHT, MAX_WIDTH, MIN_SIDE, Resolution};
use crate::http::AppState;

/// What every start body may say, checked alike for the three families.
#[derive(Debug)]
pub struct CommonStart {
    /// Kept in the job; no page is opened (the layout is ours).
    pub meeting_url: String,
    /// Not 100ms's: `grid` (the default) or `active-speaker`.
    pub layout: JobLayout,
}

/// Checks the fields every start body may have: `meeting_url`, `destination` (100ms's storage
/// prefix: accepted, files stay in the recordings directory), `transcription` (not offered)
/// and `layout` (ours). A problem is added for each bad one.
pub fn common_start(
    problems: &mut Problems,
    meeting_url: Field<String>,
    destination: Field<String>,
    transcription: Field<Value>,
    layout: Field<String>,
) -> CommonStart {
    let meeting_url = problems.optional(meeting_url, "meeting_url", "must be a string").unwrap_or_default();
    problems.optional(destination, "destination", "must be a string");
    if let Some(t) = problems.optional(transcription, "transcription", "must be an object")
        && t.get("enabled").and_then(Value::as_bool) == Some(true)
    {
        problems.add("transcription", "transcription is not offered");
    }
    let layout = problems
        .optional_if(
            layout,
            "layout",
            |l| l == "grid" || l == "active-speaker",
            "must be \"grid\" or \"active-speaker\"",
        )
        .map_or(JobLayout::Grid, |l| if l == "active-speaker" { JobLayout::ActiveSpeaker } else { JobLayout::Grid });
    CommonStart { meeting_url, layout }
}

/// Pauses or resumes a running job's recording; 400 when it is in that state already.
pub async fn set_paused(st: &AppState, job: &Recording, paused: bool) -> Result<Recording, RestError> {
    if job.spec.get("paused").and_then(Value::as_bool).unwrap_or(false) == paused {
        let state = if paused { "paused" } else { "not paused" };
        return Err(RestError::bad_request(format!("the recording is {state} already")));
    }
    Ok(st.recorder.set_paused(job, paused).await?)
}

/// The `paused` field of a job that records: whether its recording is paused now.
pub fn paused_json(r: &Recording) -> Value {
    json!(r.spec.get("paused").and_then(Value::as_bool).unwrap_or(false))
}

/// A start body's `resolution`: even sides within the compositor's limits.
pub fn resolution(problems: &mut Problems, field: Field<Resolution>) -> Option<Resolution> {
    problems.optional_if(
        field,
        "resolution",
        |r| {
            (MIN_SIDE..=MAX_WIDTH).contains(&r.width)
                && (MIN_SIDE..=MAX_HEIGHT).contains(&r.height)
                && r.width.is_multiple_of(2)
                && r.height.is_multiple_of(2)
        },
        format!("must be {{width, height}}, even, from {MIN_SIDE} to {MAX_WIDTH}×{MAX_HEIGHT}"),
    )
}

/// The jobs one route family serves.
#[derive(Debug)]
pub struct Family {
    pub kinds: &'static [&'static str],
    /// For messages: "recording", "live stream", "external stream".
    pub noun: &'static str,
    /// The REST shape of a job (with its assets, for a get).
    pub shape: fn(&Recording, Option<&[Asset]>) -> Value,
}

/// A time as 100ms writes it, or `null`.
pub fn ms(t: Option<i64>) -> Value {
    t.map(|t| json!(store::time::format_ms(t))).unwrap_or(Value::Null)
}

/// The fields every job has, in 100ms's names.
pub fn common_json(r: &Recording) -> Value {
    let mut v = json!({
        "id": r.id,
        "room_id": r.room_id,
        "session_id": r.session_id,
        "status": r.status,
        "meeting_url": r.spec.get("meeting_url").cloned().unwrap_or(json!("")),
        "destination": "",
        "created_at": ms(Some(r.created_at)),
        "started_at": ms(r.started_at),
        "started_by": r.started_by,
        "stopped_at": ms(r.stopped_at),
        "stopped_by": r.stopped_by,
        "updated_at": ms(Some(r.updated_at)),
    });
    if let Some(layout) = r.spec.get("layout") {
        v["layout"] = layout.clone();
    }
    if !r.error.is_empty() {
        v["error"] = json!({ "message": r.error });
    }
    v
}

/// The filters of a list call (`room_id`, `session_id`, `status`), for a family's kinds.
pub fn filter_of(q: &QueryMap, kinds: &[&'static str]) -> RecordingFilter {
    let get = |k: &str| q.get(k).filter(|s| !s.is_empty()).cloned();
    RecordingFilter {
        room_id: get("room_id"),
        session_id: get("session_id"),
        status: get("status"),
        kinds: kinds.to_vec(),
    }
}

/// A room of the workspace, or 404.
pub async fn room_of(st: &AppState, ws: &store::Workspace, room_id: &str) -> Result<store::Room, RestError> {
    let (ws, id) = (ws.id.clone(), room_id.to_owned());
    db(st, move |s| s.room_in(&ws, &id)?.ok_or_else(|| RestError::not_found("room not found"))).await
}

/// A job of the family, or 404.
pub async fn job_of(st: &AppState, ws: &store::Workspace, id: &str, fam: &Family) -> Result<Recording, RestError> {
    let (wsid, id) = (ws.id.clone(), id.to_owned());
    let kinds = fam.kinds;
    let job = db(st, move |s| Ok(s.recording(&wsid, &id)?.filter(|j| kinds.contains(&j.kind.as_str())))).await?;
    job.ok_or_else(|| RestError::not_found(format!("{} not found", fam.noun)))
}

/// Stops every live job of the family in a room; 404 when none runs.
pub async fn stop_room(st: &AppState, ws: &store::Workspace, room_id: &str, fam: &Family) -> RestResult {
    let room = room_of(st, ws, room_id).await?;
    let (wsid, rid, kinds) = (ws.id.clone(), room.id.clone(), fam.kinds);
    let jobs = db(st, move |s| {
        let f = RecordingFilter { room_id: Some(rid), kinds: kinds.to_vec(), ..Default::default() };
        Ok(s.recordings(&wsid, &f, &store::Page::first(100))?.data)
    })
    .await?;
    let live: Vec<Recording> = jobs.into_iter().filter(|j| rec::is_live(&j.status)).collect();
    if live.is_empty() {
        return Err(RestError::not_found(format!("no {} is running in this room", fam.noun)));
    }
    let mut out = Vec::new();
    for job in &live {
        st.recorder.stop(job, "", "client request").await?;
        out.push(job_of(st, ws, &job.id, fam).await?);
    }
    Ok(paginated(100, out.iter().map(|j| (fam.shape)(j, None)).collect(), None))
}

/// Stops one job; 400 if it ended already.
pub async fn stop_one(st: &AppState, ws: &store::Workspace, id: &str, fam: &Family) -> RestResult {
    let job = job_of(st, ws, id, fam).await?;
    if !rec::is_live(&job.status) {
        return Err(RestError::bad_request(format!("{} is {} already", fam.noun, job.status)));
    }
    st.recorder.stop(&job, "", "client request").await?;
    Ok(Json((fam.shape)(&job_of(st, ws, id, fam).await?, None)))
}

/// A page of the family's jobs (filters `room_id`, `session_id`, `status`).
pub async fn list(st: &AppState, ws: store::Workspace, q: &QueryMap, fam: &Family) -> RestResult {
    let page = page_of(q)?;
    let filter = filter_of(q, fam.kinds);
    let limit = page.limit;
    let listing = db(st, move |s| Ok(s.recordings(&ws.id, &filter, &page)?)).await?;
    Ok(paginated(limit, listing.data.iter().map(|r| (fam.shape)(r, None)).collect(), listing.last))
}

/// One job with its assets.
pub async fn get_one(st: &AppState, ws: &store::Workspace, id: &str, fam: &Family) -> RestResult {
    let job = job_of(st, ws, id, fam).await?;
    let jid = job.id.clone();
    let assets = db(st, move |s| Ok(s.job_assets(&jid)?)).await?;
    Ok(Json((fam.shape)(&job, Some(&assets))))
}
