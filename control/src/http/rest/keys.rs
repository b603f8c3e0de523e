//! `/v2/workspace/keys`: the workspace's key pairs (an addition to 100ms's API, which manages
//! keys in its dashboard). List them (access keys only), add one (its secret is shown in that
//! answer only), revoke one (its tokens are refused from the next request on; the last key
//! stays). Rotation: add a key, move the app servers to it, revoke the old one.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::json;

use super::{Mgmt, RestError, RestResult, db, ts};
use crate::http::AppState;

pub async fn list(State(st): State<AppState>, Mgmt(ws): Mgmt) -> RestResult {
    let keys = db(&st, move |s| Ok(s.credentials(&ws.id)?)).await?;
    let data: Vec<_> =
        keys.iter().map(|c| json!({ "access_key": c.access_key, "created_at": ts(c.created_at) })).collect();
    Ok(Json(json!({ "data": data })))
}

pub async fn add(State(st): State<AppState>, Mgmt(ws): Mgmt) -> RestResult {
    let key = db(&st, move |s| Ok(s.add_credential(&ws.id)?)).await?;
    Ok(Json(json!({ "access_key": key.access_key, "secret": key.secret })))
}

pub async fn revoke(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(access_key): Path<String>) -> RestResult {
    let key = access_key.clone();
    db(&st, move |s| match s.revoke_credential(&ws.id, &key) {
        Err(store::StoreError::NoCredential(k)) => Err(RestError::not_found(format!("no key {k} in this workspace"))),
        Err(store::StoreError::LastCredential(k)) => {
            Err(RestError::bad_request(format!("key {k} is the workspace's last: add another before revoking it")))
        }
        other => Ok(other?),
    })
    .await?;
    Ok(Json(json!({ "access_key": access_key, "revoked": true })))
}
