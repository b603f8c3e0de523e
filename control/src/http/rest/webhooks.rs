//! `/v2/webhooks`: the workspace's webhook endpoint and the event log (an addition to 100ms's
//! API, which configures webhooks in its dashboard). The endpoint's `secret` signs every
//! delivery (docs/webhooks.md); `GET /v2/webhooks/events?status=undelivered` lists what has not
//! reached the receiver yet, with the last error.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use store::template::FieldError;

use super::{Mgmt, QueryMap, RestError, RestResult, db, page_of, paginated, parse_body};
use crate::http::AppState;

fn endpoint_json(e: Option<store::outbox::Endpoint>) -> Value {
    match e {
        Some(e) => json!({ "url": e.url, "headers": e.headers, "secret": e.secret }),
        None => json!({ "url": null, "headers": {}, "secret": null }),
    }
}

pub async fn get_endpoint(State(st): State<AppState>, Mgmt(ws): Mgmt) -> RestResult {
    let e = db(&st, move |s| Ok(s.workspace_webhook(&ws.id)?)).await?;
    Ok(Json(endpoint_json(e)))
}

pub async fn set_endpoint(State(st): State<AppState>, Mgmt(ws): Mgmt, body: Bytes) -> RestResult {
    let v: Value = parse_body(&body)?;
    let e = store::outbox::check_endpoint(&v, "webhook").map_err(|e| RestError::invalid(vec![e]))?;
    let e = db(&st, move |s| Ok(s.set_workspace_webhook(&ws.id, Some(e))?)).await?;
    Ok(Json(endpoint_json(e)))
}

pub async fn delete_endpoint(State(st): State<AppState>, Mgmt(ws): Mgmt) -> Result<impl IntoResponse, RestError> {
    db(&st, move |s| Ok(s.set_workspace_webhook(&ws.id, None)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Statuses `GET /v2/webhooks/events` filters on.
const STATUSES: &[&str] = &["pending", "delivered", "failed", "unrouted", "undelivered"];

pub async fn list_events(State(st): State<AppState>, Mgmt(ws): Mgmt, q: QueryMap) -> RestResult {
    let page = page_of(&q)?;
    let limit = page.limit;
    let status = q.get("status").filter(|s| !s.is_empty()).cloned();
    if let Some(s) = &status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(RestError::invalid(vec![FieldError::new("status", format!("one of {}", STATUSES.join(", ")))]));
    }
    let room_id = q.get("room_id").filter(|s| !s.is_empty()).cloned();
    let l = db(&st, move |s| Ok(s.webhook_events(&ws.id, status.as_deref(), room_id.as_deref(), &page)?)).await?;
    let fmt = |t: Option<i64>| t.map(store::time::format_ms);
    let data = l
        .data
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "type": e.kind,
                "room_id": e.room_id,
                "status": e.status,
                "attempts": e.attempts,
                "url": e.url,
                "last_error": e.last_error,
                "created_at": store::time::format_ms(e.created_at),
                "next_attempt_at": fmt(e.next_attempt_at),
                "delivered_at": fmt(e.delivered_at),
                "event": e.event,
            })
        })
        .collect();
    Ok(paginated(limit, data, l.last))
}
