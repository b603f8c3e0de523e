//! Prebuilt layouts (`store::template::layout`): what 100ms's conferencing UI shows each role.
//!
//! - Management (a management token): `GET /v2/templates/{id}/layouts` (every role's),
//!   `GET`, `POST` (replace, checked against the `@100mslive/types-prebuilt` shape) and `DELETE`
//!   (back to the default) of `/v2/templates/{id}/layouts/{role}`.
//! - Prebuilt itself (an auth token, as it calls 100ms's `GET /v2/layouts/ui`): every role's
//!   layout of the token's room's template, the token's role first, `{data, limit, last}`.
//! - Prebuilt's event endpoint (an auth token): `POST /v2/client/feedback`, the leave screen's
//!   feedback, kept in the store.
//!
//! The two client routes answer any origin (an app embedding Prebuilt elsewhere calls them
//! across origins), and their `OPTIONS` preflight allows the `Authorization` header.

use std::time::SystemTime;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use store::template::layout::{self, check_layout};
use store::token::AuthClaims;
use util::LockExt;

use super::templates::owned;
use super::{Mgmt, RestError, RestResult, db};
use crate::http::AppState;

/// The peer a client request comes from, by its auth token.
#[derive(Debug, Clone)]
pub struct Client(pub AuthClaims, pub store::Workspace);

impl FromRequestParts<AppState> for Client {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Client, Response> {
        let unauthorized = |detail: &str| {
            with_cors(
                RestError::new(StatusCode::UNAUTHORIZED, "Token validation error").with_detail(detail).into_response(),
            )
        };
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| unauthorized("Authorization must be \"Bearer <auth token>\""))?;
        let store = st.store.lock_unpoisoned();
        match store::token::verify_auth_token(&store, token, SystemTime::now()) {
            Ok((claims, ws)) => Ok(Client(claims, ws)),
            Err(store::token::TokenError::Store(e)) => Err(with_cors(RestError::from(e).into_response())),
            Err(e) => Err(unauthorized(&e.to_string())),
        }
    }
}

fn with_cors(r: Response) -> Response {
    super::any_origin(r, "GET, POST, OPTIONS", "authorization, content-type")
}

/// The `OPTIONS` answer of the two client routes.
pub async fn client_preflight() -> Response {
    with_cors(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v2/layouts/ui`.
pub async fn ui(State(st): State<AppState>, Client(claims, ws): Client) -> Response {
    let result = db(&st, move |s| {
        let room = s.room(&claims.room_id)?.filter(|r| r.workspace_id == ws.id);
        let room = room.ok_or_else(|| RestError::not_found("room not found"))?;
        let t = owned(s, &ws.id, &room.template_id)?;
        let data = layout::template_layouts(&t, Some(&claims.role));
        Ok(json!({ "data": data, "limit": data.len(), "last": null }))
    })
    .await;
    with_cors(match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    })
}

/// `POST /v2/client/feedback`: `{peer?, payload}` as the SDK sends it.
pub async fn feedback(State(st): State<AppState>, Client(claims, ws): Client, body: Bytes) -> Response {
    let result = async {
        if body.len() > store::feedback::MAX_FEEDBACK_BYTES {
            return Err(RestError::bad_request(format!(
                "feedback larger than {} bytes",
                store::feedback::MAX_FEEDBACK_BYTES
            )));
        }
        let body: Value = serde_json::from_slice(&body)
            .map_err(|e| RestError::bad_request(format!("feedback must be a JSON object: {e}")))?;
        if !body.is_object() {
            return Err(RestError::bad_request("feedback must be a JSON object"));
        }
        let session_id = body.pointer("/peer/session_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let peer_id = body.pointer("/peer/peer_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let f = store::feedback::Feedback {
            id: String::new(),
            room_id: claims.room_id,
            session_id,
            peer_id,
            user_id: claims.user_id,
            role: claims.role,
            body,
            created_at: 0,
        };
        db(&st, move |s| Ok(s.add_feedback(&ws.id, &f)?)).await
    }
    .await;
    with_cors(match result {
        Ok(f) => Json(json!({ "id": f.id })).into_response(),
        Err(e) => e.into_response(),
    })
}

/// `GET /v2/templates/{template_id}/layouts`.
pub async fn list(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    let t = db(&st, move |s| owned(s, &ws.id, &id)).await?;
    let data = layout::template_layouts(&t, None);
    Ok(Json(json!({ "data": data, "limit": data.len(), "last": null })))
}

/// `GET /v2/templates/{template_id}/layouts/{role}`.
pub async fn get_one(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path((id, role)): Path<(String, String)>,
) -> RestResult {
    let t = db(&st, move |s| owned(s, &ws.id, &id)).await?;
    layout::role_layout(&t, &role).map(Json).ok_or_else(|| RestError::not_found(format!("role {role:?} not found")))
}

/// `POST /v2/templates/{template_id}/layouts/{role}`: replaces the role's layout.
pub async fn set(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path((id, role)): Path<(String, String)>,
    body: Bytes,
) -> RestResult {
    let mut value: Value = super::parse_body(&body)?;
    check_layout(&value).map_err(RestError::invalid)?;
    // The ids are the server's: a layout read back and sent again carries them.
    if let Value::Object(m) = &mut value {
        for k in ["id", "role", "role_id", "template_id", "app_id"] {
            m.remove(k);
        }
    }
    store_layout(st, ws, id, role, Some(value)).await
}

/// `DELETE /v2/templates/{template_id}/layouts/{role}`: the role goes back to the default.
pub async fn reset(State(st): State<AppState>, Mgmt(ws): Mgmt, Path((id, role)): Path<(String, String)>) -> RestResult {
    store_layout(st, ws, id, role, None).await
}

async fn store_layout(
    st: AppState,
    ws: store::Workspace,
    id: String,
    role: String,
    value: Option<Value>,
) -> RestResult {
    let t = db(&st, move |s| {
        let t = owned(s, &ws.id, &id)?;
        if !t.roles.contains_key(&role) {
            return Err(RestError::not_found(format!("role {role:?} not found")));
        }
        let mut parts = t.parts.clone();
        if !parts.layouts.is_object() {
            parts.layouts = json!({});
        }
        if let Value::Object(layouts) = &mut parts.layouts {
            match value {
                Some(v) => layouts.insert(role.clone(), v),
                None => layouts.remove(&role),
            };
        }
        let t = s.set_template_parts(&t.id, &parts)?;
        Ok((t, role))
    })
    .await?;
    let (t, role) = t;
    layout::role_layout(&t, &role).map(Json).ok_or_else(|| RestError::internal("layout vanished"))
}
