//! The JSON API the demo app uses.
//!
//! - `GET /api/config` → `{"initEndpoint", "roles", "templateId"}`
//! - `POST /api/token` `{"room", "user", "role"}` → `{"token", "room_id"}` (the room is created
//!   in the default workspace if new; 400 for a bad name, an unknown role, a missing field)
//! - `GET /api/status` → `{"processes": {"router": {"pid", "restarts", "last_exit"}, ...}}`

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use util::LockExt;

use super::{ApiError, AppState};

/// Longest request body `POST /api/token` reads.
const MAX_TOKEN_BODY: usize = 4096;

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

pub async fn token(State(st): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    if body.len() > MAX_TOKEN_BODY {
        return Err(ApiError::bad_request(format!("body longer than {MAX_TOKEN_BODY} bytes")));
    }
    // Parsed by hand, not with the Json extractor, so every bad body gets our JSON error shape.
    let req: TokenRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"room\", \"user\", \"role\"}}: {e}")))?;
    let store = st.store.clone();
    let ws = st.workspace.clone();
    let (token, room_id) = tokio::task::spawn_blocking(move || {
        let store = store.lock_unpoisoned();
        crate::issue_token(&store, &ws, &req.room, &req.user, &req.role)
    })
    .await
    .map_err(|e| ApiError::internal(format!("token task: {e}")))??;
    Ok(Json(json!({ "token": token, "room_id": room_id })))
}

pub async fn status(State(st): State<AppState>) -> Json<Value> {
    Json(json!({ "processes": st.status.snapshot() }))
}

pub async fn not_found() -> ApiError {
    ApiError { status: StatusCode::NOT_FOUND, message: "no such API endpoint".into() }
}

pub async fn method_not_allowed() -> ApiError {
    ApiError { status: StatusCode::METHOD_NOT_ALLOWED, message: "use POST".into() }
}
