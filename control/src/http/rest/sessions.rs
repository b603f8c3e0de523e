//! `/v2/sessions`: past and current sessions with every peer that was in them (written by
//! signaling as peers come and go; see `store::session`).

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use store::session::{Session, SessionFilter};

use super::{Mgmt, QueryMap, RestError, RestResult, bool_param, db, page_of, paginated, time_param};
use crate::http::AppState;

fn ms(t: i64) -> String {
    store::time::format_ms(t)
}

/// The REST shape of a session.
pub fn session_json(s: &Session) -> Value {
    let peers: serde_json::Map<String, Value> = s
        .peers
        .values()
        .map(|p| {
            let mut v = json!({
                "id": p.id,
                "session_id": p.session_id,
                "name": p.name,
                "role": p.role,
                "user_id": p.user_id,
                "joined_at": ms(p.joined_at),
            });
            if let Some(l) = p.left_at {
                v["left_at"] = json!(ms(l));
            }
            (p.id.clone(), v)
        })
        .collect();
    let mut v = json!({
        "id": s.id,
        "room_id": s.room_id,
        "customer_id": s.workspace_id,
        "active": s.active,
        "peers": peers,
        "created_at": ms(s.started_at),
        "updated_at": ms(s.updated_at),
    });
    if let Some(e) = s.ended_at {
        v["ended_at"] = json!(ms(e));
    }
    v
}

pub async fn list(State(st): State<AppState>, Mgmt(ws): Mgmt, q: QueryMap) -> RestResult {
    let page = page_of(&q)?;
    let limit = page.limit;
    let filter = SessionFilter {
        // 100ms lists active sessions unless asked otherwise (`active=false` for ended ones).
        active: Some(bool_param(&q, "active")?.unwrap_or(true)),
        room_id: q.get("room_id").filter(|s| !s.is_empty()).cloned(),
        after: time_param(&q, "after")?,
        before: time_param(&q, "before")?,
    };
    let l = db(&st, move |s| Ok(s.sessions(&ws.id, &filter, &page)?)).await?;
    Ok(paginated(limit, l.data.iter().map(session_json).collect(), l.last))
}

pub async fn get_one(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    let s = db(&st, move |s| s.session(&ws.id, &id)?.ok_or_else(|| RestError::not_found("session not found"))).await?;
    Ok(Json(session_json(&s)))
}
