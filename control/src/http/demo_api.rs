//! The JSON API the demo app uses (not the REST API: that is [`super::rest`]).
//!
//! - `GET /api/config` → `{"initEndpoint", "roles", "templateId"}`
//! - `POST /api/room-codes` `{"room"}` → `{"room_id", "codes": {"<role>": "<code>", ...}}`: the
//!   room (created in the default workspace if new) and a room code per role, which the demo
//!   exchanges for a token through the SDK (`getAuthTokenByRoomCode`), as 100ms's apps do
//! - `POST /api/token` `{"room", "user", "role"}` → `{"token", "room_id"}` (the room is created
//!   in the default workspace if new; 400 for a bad name, an unknown role, a missing field)
//! - `GET /api/status` → `{"processes": {"router": {"pid", "restarts", "last_exit"}, ...}}`
//!
//! The first two let anyone who reaches them into any room as any role, so they answer only
//! when control listens on loopback, or when `--open-demo-tokens` says the network is trusted
//! (logged as a warning at start); otherwise 403, and the demo joins with a room code link an
//! app server or operator made (`POST /v2/room-codes/room/<id>`).

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::warn;
use util::LockExt;

use super::AppState;

/// Longest request body `POST /api/token` reads.
const MAX_TOKEN_BODY: usize = 4096;

/// The `/api` routes; anything else under `/api` is a JSON 404.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/config", get(config))
        .route("/api/token", post(token).fallback(method_not_allowed))
        .route("/api/room-codes", post(room_codes).fallback(method_not_allowed))
        .route("/api/status", get(status))
        .route("/api/{*rest}", axum::routing::any(not_found))
}

pub async fn config(State(st): State<AppState>) -> Json<Value> {
    Json(json!({
        "initEndpoint": st.init_endpoint,
        "roles": st.roles,
        "templateId": st.template_id,
    }))
}

#[derive(Debug, Deserialize)]
struct TokenRequest {
    room: String,
    user: String,
    role: String,
}

/// The demo's convenience endpoints answer only where anyone who can reach them is trusted.
fn check_open(st: &AppState) -> Result<(), DemoApiError> {
    if st.demo_tokens_open {
        return Ok(());
    }
    Err(DemoApiError {
        status: StatusCode::FORBIDDEN,
        message: "the demo's token and room-code endpoints are off: control listens beyond loopback. Join with \
                  a room code link (?code=..., codes from POST /v2/room-codes/room/<room_id>), or start control \
                  with --open-demo-tokens on a trusted network"
            .into(),
    })
}

#[derive(Debug, Deserialize)]
struct RoomCodesRequest {
    room: String,
}

pub async fn room_codes(State(st): State<AppState>, body: Bytes) -> Result<Json<Value>, DemoApiError> {
    check_open(&st)?;
    if body.len() > MAX_TOKEN_BODY {
        return Err(DemoApiError::bad_request(format!("body longer than {MAX_TOKEN_BODY} bytes")));
    }
    let req: RoomCodesRequest =
        serde_json::from_slice(&body).map_err(|e| DemoApiError::bad_request(format!("expected {{\"room\"}}: {e}")))?;
    let store = st.store.clone();
    let ws = st.workspace.clone();
    let (room_id, codes) = tokio::task::spawn_blocking(move || -> Result<_, crate::Error> {
        store::check_room_name(&req.room)?;
        let store = store.lock_unpoisoned();
        let room = store.upsert_room(&ws.id, &req.room, None)?;
        let codes = store.create_room_codes(&room.id)?;
        Ok((room.id, codes))
    })
    .await
    .map_err(|e| DemoApiError::internal(format!("room-codes task: {e}")))??;
    let codes: serde_json::Map<String, Value> = codes.into_iter().map(|c| (c.role, Value::String(c.code))).collect();
    Ok(Json(json!({ "room_id": room_id, "codes": codes })))
}

pub async fn token(State(st): State<AppState>, body: Bytes) -> Result<Json<Value>, DemoApiError> {
    check_open(&st)?;
    if body.len() > MAX_TOKEN_BODY {
        return Err(DemoApiError::bad_request(format!("body longer than {MAX_TOKEN_BODY} bytes")));
    }
    // Parsed by hand, not with the Json extractor, so every bad body gets our JSON error shape.
    let req: TokenRequest = serde_json::from_slice(&body)
        .map_err(|e| DemoApiError::bad_request(format!("expected {{\"room\", \"user\", \"role\"}}: {e}")))?;
    let store = st.store.clone();
    let ws_id = st.workspace.id.clone();
    let (token, room_id) = tokio::task::spawn_blocking(move || {
        let store = store.lock_unpoisoned();
        // Read now, not at start: the key it signed with then may have been revoked since.
        let ws = store.workspace(&ws_id)?.ok_or_else(|| store::StoreError::NoWorkspace(ws_id.clone()))?;
        crate::issue_token(&store, &ws, &req.room, &req.user, &req.role)
    })
    .await
    .map_err(|e| DemoApiError::internal(format!("token task: {e}")))??;
    Ok(Json(json!({ "token": token, "room_id": room_id })))
}

pub async fn status(State(st): State<AppState>) -> Json<Value> {
    Json(json!({ "processes": st.status.snapshot() }))
}

pub async fn not_found() -> DemoApiError {
    DemoApiError { status: StatusCode::NOT_FOUND, message: "no such API endpoint".into() }
}

pub async fn method_not_allowed() -> DemoApiError {
    DemoApiError { status: StatusCode::METHOD_NOT_ALLOWED, message: "use POST".into() }
}

/// A demo API error: the status code, and a message for the caller.
#[derive(Debug)]
pub struct DemoApiError {
    pub status: StatusCode,
    pub message: String,
}

impl DemoApiError {
    pub fn bad_request(message: impl Into<String>) -> DemoApiError {
        DemoApiError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }
    pub fn internal(message: impl Into<String>) -> DemoApiError {
        DemoApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: message.into() }
    }
}

impl From<crate::Error> for DemoApiError {
    fn from(e: crate::Error) -> DemoApiError {
        match e {
            crate::Error::Usage(m) => DemoApiError::bad_request(m),
            crate::Error::Store(store::StoreError::BadRoomName(m)) => DemoApiError::bad_request(format!("room: {m}")),
            other => {
                warn!("API: {other}");
                DemoApiError::internal(other.to_string())
            }
        }
    }
}

impl IntoResponse for DemoApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.status.as_u16(), "message": self.message });
        (self.status, Json(body)).into_response()
    }
}
