//! `/v2/active-rooms/{room_id}`: the live room, through signaling's admin socket
//! ([`crate::signaling_admin`]). Reads come from signaling's room actor (the truth about who is
//! connected); writes are carried out by it, so clients see them at once: a removed peer gets
//! `on-peer-leave-request` and is disconnected, a role change reaches every client as
//! `on-peer-update` and changes what the peer may publish and whom it receives.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use store::template::FieldError;

use super::{Field, Mgmt, Problems, QueryMap, RestError, RestResult, db, parse_request};
use crate::http::AppState;
use crate::signaling_admin::AdminError;

/// Longest message text, name and metadata accepted (signaling checks again).
const MAX_MESSAGE: usize = 64 * 1024;

impl From<AdminError> for RestError {
    fn from(e: AdminError) -> RestError {
        match e {
            AdminError::Unavailable(m) => {
                RestError::new(StatusCode::SERVICE_UNAVAILABLE, "signaling is unavailable").with_detail(m)
            }
            AdminError::Refused { status, message } => {
                RestError::new(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), message)
            }
        }
    }
}

/// 404 unless the room exists in the token's workspace.
async fn check_room(st: &AppState, ws: store::Workspace, room_id: &str) -> Result<store::Room, RestError> {
    let id = room_id.to_owned();
    db(st, move |s| s.room_in(&ws.id, &id)?.ok_or_else(|| RestError::not_found("room not found"))).await
}

async fn admin(st: &AppState, op: &str, params: Value) -> Result<Value, RestError> {
    Ok(st.admin.call(op, params).await?)
}

fn ms(v: &Value) -> Value {
    v.as_i64().map(|t| json!(store::time::format_ms(t))).unwrap_or(Value::Null)
}

/// The REST shape of a peer (`with_tracks` for the single-peer routes).
fn peer_json(p: &Value, with_tracks: bool) -> Value {
    let mut v = json!({
        "id": p["id"],
        "name": p["name"],
        "user_id": p["user_id"],
        "metadata": p["metadata"],
        "role": p["role"],
        "joined_at": ms(&p["joined_at_ms"]),
    });
    if with_tracks {
        let tracks: Map<String, Value> = p["tracks"]
            .as_object()
            .map(|t| {
                t.iter()
                    .map(|(id, t)| {
                        (
                            id.clone(),
                            json!({
                                "id": t["id"],
                                "stream_id": t["stream_id"],
                                "mute": t["mute"],
                                "type": t["type"],
                                "source": t["source"],
                                "description": t["description"],
                                "started_at": ms(&t["started_at_ms"]),
                            }),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v["tracks"] = Value::Object(tracks);
    }
    v
}

fn peers_of(live: &Value) -> impl Iterator<Item = &Value> {
    live["peers"].as_array().into_iter().flatten()
}

pub async fn get_room(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(room_id): Path<String>) -> RestResult {
    let room = check_room(&st, ws, &room_id).await?;
    let live = admin(&st, "active_room", json!({ "room_id": room.id })).await?;
    let peers: Vec<&Value> = peers_of(&live).map(|p| &p["id"]).collect();
    Ok(Json(json!({
        "id": room.id,
        "name": room.name,
        "customer_id": room.workspace_id,
        "app_id": room.workspace_id,
        "active": true,
        "session": {
            "id": live["session_id"],
            "created_at": ms(&live["started_at_ms"]),
            "peers": peers,
        },
    })))
}

pub async fn list_peers(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path(room_id): Path<String>,
    q: QueryMap,
) -> RestResult {
    let room = check_room(&st, ws, &room_id).await?;
    let live = admin(&st, "active_room", json!({ "room_id": room.id })).await?;
    let user = q.get("user_id").filter(|s| !s.is_empty());
    let role = q.get("role").filter(|s| !s.is_empty());
    let peers: Map<String, Value> = peers_of(&live)
        .filter(|p| user.is_none_or(|u| p["user_id"] == **u))
        .filter(|p| role.is_none_or(|r| p["role"] == **r))
        .map(|p| (p["id"].as_str().unwrap_or_default().to_owned(), peer_json(p, false)))
        .collect();
    Ok(Json(json!({ "peers": peers })))
}

pub async fn get_peer(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path((room_id, peer_id)): Path<(String, String)>,
) -> RestResult {
    let room = check_room(&st, ws, &room_id).await?;
    let live = admin(&st, "active_room", json!({ "room_id": room.id })).await?;
    let peer = peers_of(&live).find(|p| p["id"] == *peer_id).ok_or_else(|| RestError::not_found("peer not found"))?;
    Ok(Json(peer_json(peer, true)))
}

/// `POST .../peers/{peer_id}`: at least one of the three.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UpdatePeer {
    name: Field<String>,
    role: Field<String>,
    metadata: Field<String>,
}

/// `POST .../send-message`: to everyone, or to a peer or a role.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SendMessage {
    message: Field<String>,
    peer_id: Field<String>,
    role: Field<String>,
    #[serde(rename = "type")]
    kind: Field<String>,
}

/// `POST .../remove-peers`: a peer, or every peer of a role.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RemovePeers {
    peer_id: Field<String>,
    role: Field<String>,
    reason: Field<String>,
}

/// `POST .../end-room`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EndRoom {
    reason: Field<String>,
    lock: Field<bool>,
}

/// Text up to [`MAX_MESSAGE`] bytes; `None` if missing or null.
fn text(problems: &mut Problems, field: Field<String>, name: &str) -> Option<String> {
    problems.optional_if(
        field,
        name,
        |s| s.len() <= MAX_MESSAGE,
        format!("must be a string of at most {MAX_MESSAGE} bytes"),
    )
}

pub async fn update_peer(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path((room_id, peer_id)): Path<(String, String)>,
    body: Bytes,
) -> RestResult {
    let body: UpdatePeer = parse_request(&body)?;
    let mut problems = Problems::default();
    let name = text(&mut problems, body.name, "name");
    let role = text(&mut problems, body.role, "role");
    let metadata = text(&mut problems, body.metadata, "metadata");
    if name.is_none() && role.is_none() && metadata.is_none() && problems.is_empty() {
        problems.add("body", "give at least one of name, role, metadata");
    }
    problems.finish()?;
    let room = check_room(&st, ws, &room_id).await?;
    if let Some(r) = &role {
        let (tid, r2) = (room.template_id.clone(), r.clone());
        db(&st, move |s| {
            let t = s.template(&tid)?.ok_or_else(|| RestError::not_found("template not found"))?;
            if t.roles.contains_key(&r2) {
                Ok(())
            } else {
                Err(RestError::invalid(vec![FieldError::new("role", format!("no role {r2:?} in the room's template"))]))
            }
        })
        .await?;
    }
    let peer = admin(
        &st,
        "update_peer",
        json!({ "room_id": room.id, "peer_id": peer_id, "name": name, "role": role, "metadata": metadata }),
    )
    .await?;
    Ok(Json(peer_json(&peer, true)))
}

pub async fn send_message(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path(room_id): Path<String>,
    body: Bytes,
) -> RestResult {
    let body: SendMessage = parse_request(&body)?;
    let mut problems = Problems::default();
    let message = text(&mut problems, body.message, "message");
    if message.as_deref().is_none_or(str::is_empty) && problems.is_empty() {
        problems.add("message", "required");
    }
    let peer_id = text(&mut problems, body.peer_id, "peer_id");
    let role = text(&mut problems, body.role, "role");
    let kind = text(&mut problems, body.kind, "type").unwrap_or_else(|| "chat".into());
    problems.finish()?;
    let room = check_room(&st, ws, &room_id).await?;
    admin(
        &st,
        "send_message",
        json!({ "room_id": room.id, "message": message, "type": kind, "peer_id": peer_id, "role": role }),
    )
    .await?;
    Ok(Json(json!({ "message": "message sent" })))
}

pub async fn remove_peers(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path(room_id): Path<String>,
    body: Bytes,
) -> RestResult {
    let body: RemovePeers = parse_request(&body)?;
    let mut problems = Problems::default();
    let peer_id = text(&mut problems, body.peer_id, "peer_id");
    let role = text(&mut problems, body.role, "role");
    let reason = text(&mut problems, body.reason, "reason").unwrap_or_default();
    if peer_id.is_none() && role.is_none() && problems.is_empty() {
        problems.add("peer_id", "give peer_id or role");
    }
    problems.finish()?;
    let room = check_room(&st, ws, &room_id).await?;
    // peer_id wins over role, as with 100ms.
    let role = if peer_id.is_some() { None } else { role };
    admin(&st, "remove_peers", json!({ "room_id": room.id, "peer_id": peer_id, "role": role, "reason": reason }))
        .await?;
    Ok(Json(json!({ "message": "peer remove request submitted" })))
}

pub async fn end_room(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path(room_id): Path<String>,
    body: Bytes,
) -> RestResult {
    let body: EndRoom = parse_request(&body)?;
    let mut problems = Problems::default();
    let reason = text(&mut problems, body.reason, "reason").unwrap_or_default();
    let lock = problems.optional(body.lock, "lock", "must be true or false").unwrap_or(false);
    problems.finish()?;
    let room = check_room(&st, ws, &room_id).await?;
    admin(&st, "end_room", json!({ "room_id": room.id, "reason": reason, "lock": lock })).await?;
    if lock {
        // Signaling disables the room too; doing it here as well makes the lock hold even if the
        // room had already emptied.
        let id = room.id.clone();
        db(&st, move |s| Ok(s.set_room_enabled(&id, false)?)).await?;
    }
    Ok(Json(json!({ "message": "session is ending" })))
}
