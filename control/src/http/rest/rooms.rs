//! `/v2/rooms`, `/v2/room-codes` and the token routes.
//!
//! Creating a room is an upsert by name (case-insensitive), as with 100ms; the optional fields
//! are checked with 100ms's limits and kept as given. A room's own `webhook` overrides the
//! workspace's for its events and gets its own signing secret.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use store::codes::RoomCode;
use store::template::FieldError;
use store::{Room, RoomFilter};

use super::{
    Field, Mgmt, Problems, QueryMap, RestError, RestResult, bool_param, db, page_of, paginated, parse_request,
    time_param, ts,
};
use crate::http::AppState;

/// Longest room description.
const MAX_DESCRIPTION: usize = 1000;
/// Lifetime of tokens minted for room codes and by `POST /v2/auth-tokens` unless asked otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest lifetime a minted auth token may ask for (100ms: 90 days).
const MAX_TOKEN_TTL: u64 = 90 * 24 * 3600;

/// The REST shape of a room (`key` is added in lists, as 100ms does).
pub fn room_json(r: &Room, template_name: Option<&str>) -> Value {
    let mut v = json!({
        "id": r.id,
        "name": r.name,
        "enabled": r.enabled,
        "description": "",
        "customer_id": r.workspace_id,
        "customer": r.workspace_id,
        "app_id": r.workspace_id,
        "recording_source_template": !r.attrs.contains_key("recording_info"),
        "template_id": r.template_id,
        "template": template_name,
        "region": "auto",
        "large_room": false,
        "size": 0,
        "max_duration_seconds": store::MAX_SESSION_SECS,
        "created_at": ts(r.created_at),
        "updated_at": ts(r.updated_at),
    });
    if let Value::Object(m) = &mut v {
        for (k, val) in &r.attrs {
            m.insert(k.clone(), val.clone());
        }
    }
    v
}

/// The room's template name, for the deprecated `template` field.
fn template_name(s: &store::Store, r: &Room) -> Option<String> {
    s.template(&r.template_id).ok().flatten().map(|t| t.name)
}

/// A room create or update body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RoomBody {
    name: Field<String>,
    template_id: Field<String>,
    enabled: Field<bool>,
    #[serde(flatten)]
    attrs: RoomAttrs,
}

/// The optional fields of a room, kept as given in the room's attributes. Unknown fields are
/// ignored, as 100ms does.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RoomAttrs {
    /// Refused: 100ms deprecated it for `template_id`.
    template: Field<Value>,
    description: Field<String>,
    large_room: Field<bool>,
    max_duration_seconds: Field<u64>,
    polls: Field<Vec<String>>,
    recording_info: Field<Map<String, Value>>,
    region: Field<String>,
    size: Field<u64>,
    /// `null` removes the room's own endpoint.
    webhook: Field<Value>,
}

/// Checks the optional fields of a room create/update body; returns them to store (without
/// name, template_id and enabled, which have columns). Fields are checked in name order, the
/// order clients have always had the details in.
fn room_attrs(body: RoomAttrs, old_webhook: Option<&Value>) -> Result<Map<String, Value>, RestError> {
    let mut problems = Problems::default();
    let mut attrs = Map::new();
    if body.template.is_present() {
        problems.add("template", "not supported: pass template_id");
    }
    let large = matches!(body.large_room, Field::Given(true));
    let mut keep = |key: &str, checked: Result<Option<Value>, String>| match checked {
        Ok(Some(v)) => {
            attrs.insert(key.to_owned(), v);
        }
        Ok(None) => {}
        Err(m) => problems.add(key, m),
    };
    keep(
        "description",
        attr(body.description, |d| match d {
            Some(d) if d.len() <= MAX_DESCRIPTION => Ok(()),
            _ => Err(format!("a string of at most {MAX_DESCRIPTION} bytes")),
        }),
    );
    keep("large_room", attr(body.large_room, |b| b.map(drop).ok_or_else(|| "must be true or false".into())));
    keep(
        "max_duration_seconds",
        attr(body.max_duration_seconds, |n| match n {
            Some(n) if (120..=store::MAX_SESSION_SECS).contains(n) => Ok(()),
            _ => Err("must be from 120 to 43200".into()),
        }),
    );
    keep("polls", attr(body.polls, |p| p.map(drop).ok_or_else(|| "must be an array of poll ids".into())));
    keep("recording_info", attr(body.recording_info, |r| r.map(drop).ok_or_else(|| "must be an object".into())));
    keep(
        "region",
        attr(body.region, |r| match r.map(String::as_str) {
            Some("in" | "us" | "eu" | "auto") => Ok(()),
            _ => Err("region not supported (in, us, eu, auto)".into()),
        }),
    );
    keep(
        "size",
        attr(body.size, |n| match n {
            Some(&n) if n <= 2500 || (large && n <= 20_000) => Ok(()),
            Some(&n) if !large && n <= 20_000 => Err("room size greater than 2500, set large_room flag as true".into()),
            _ => Err("room size greater than 20000 (or not a number)".into()),
        }),
    );
    match body.webhook {
        Field::Missing => {}
        Field::Null => {
            attrs.insert("webhook".into(), Value::Null);
        }
        Field::Given(v) | Field::Wrong(v) => match store::outbox::check_endpoint(&v, "webhook") {
            Ok(mut e) => {
                // Same URL: keep the secret receivers already hold.
                e.secret = match old_webhook.and_then(|w| Some((w.get("url")?.as_str()?, w.get("secret")?.as_str()?))) {
                    Some((url, secret)) if url == e.url => secret.to_owned(),
                    _ => store::outbox::new_endpoint_secret(),
                };
                attrs.insert("webhook".into(), serde_json::to_value(e).unwrap_or_default());
            }
            Err(e) => problems.push(e),
        },
    }
    problems.finish()?;
    Ok(attrs)
}

/// One room attribute: nothing to store if not sent; else the value as sent if `check` passes
/// it (`None`: null or of another type), or `check`'s message.
fn attr<T: Serialize>(
    field: Field<T>,
    check: impl FnOnce(Option<&T>) -> Result<(), String>,
) -> Result<Option<Value>, String> {
    match field {
        Field::Missing => Ok(None),
        Field::Given(t) => check(Some(&t)).map(|()| Some(serde_json::to_value(t).unwrap_or_default())),
        Field::Null | Field::Wrong(_) => check(None).map(|()| None),
    }
}

pub async fn create(State(st): State<AppState>, Mgmt(ws): Mgmt, body: Bytes) -> RestResult {
    let body: RoomBody = parse_request(&body)?;
    let name = body.name.optional("name", "must be a string")?.ok_or_else(|| FieldError::new("name", "required"))?;
    let template_id = body.template_id.optional("template_id", "must be a string")?;
    let enabled = body.enabled.optional("enabled", "must be true or false")?;
    let v = db(&st, move |s| {
        let existing =
            s.rooms(&ws.id, &RoomFilter { name: Some(name.clone()), ..Default::default() }, &store::Page::first(1))?;
        let old_webhook = existing.data.first().and_then(|r| r.attrs.get("webhook").cloned());
        let attrs = room_attrs(body.attrs, old_webhook.as_ref())?;
        let mut room = s.upsert_room_with(&ws.id, &name, template_id.as_deref(), &attrs)?;
        if let Some(e) = enabled.filter(|e| *e != room.enabled) {
            room = s.update_room(&room.id, None, None, Some(e), &Map::new())?;
        }
        Ok(room_json(&room, template_name(s, &room).as_deref()))
    })
    .await?;
    Ok(Json(v))
}

pub async fn list(State(st): State<AppState>, Mgmt(ws): Mgmt, q: QueryMap) -> RestResult {
    let page = page_of(&q)?;
    let limit = page.limit;
    let filter = RoomFilter {
        // 100ms lists enabled rooms unless asked otherwise.
        enabled: Some(bool_param(&q, "enabled")?.unwrap_or(true)),
        name: q.get("name").filter(|s| !s.is_empty()).cloned(),
        template_id: q.get("template_id").filter(|s| !s.is_empty()).cloned(),
        after: time_param(&q, "after")?.map(|ms| ms / 1000),
        before: time_param(&q, "before")?.map(|ms| ms / 1000),
    };
    let (data, last) = db(&st, move |s| {
        let l = s.rooms(&ws.id, &filter, &page)?;
        let data = l
            .data
            .iter()
            .map(|r| {
                let mut v = room_json(r, template_name(s, r).as_deref());
                v["key"] = json!(format!("{}:{}", r.workspace_id, r.name));
                v
            })
            .collect();
        Ok((data, l.last))
    })
    .await?;
    Ok(paginated(limit, data, last))
}

fn owned_room(s: &store::Store, ws: &str, id: &str) -> Result<Room, RestError> {
    s.room_in(ws, id)?.ok_or_else(|| RestError::not_found("room not found"))
}

pub async fn get_one(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    let v = db(&st, move |s| {
        let r = owned_room(s, &ws.id, &id)?;
        Ok(room_json(&r, template_name(s, &r).as_deref()))
    })
    .await?;
    Ok(Json(v))
}

pub async fn update(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>, body: Bytes) -> RestResult {
    let body: RoomBody = parse_request(&body)?;
    let name = body.name.optional("name", "must be a string")?;
    let template_id = body.template_id.optional("template_id", "must be a string")?;
    let enabled = body.enabled.optional("enabled", "must be true or false")?;
    let v = db(&st, move |s| {
        let r = owned_room(s, &ws.id, &id)?;
        let attrs = room_attrs(body.attrs, r.attrs.get("webhook"))?;
        let r =
            s.update_room(&r.id, name.as_deref(), template_id.as_deref(), enabled, &attrs).map_err(|e| match e {
                store::StoreError::RoomNameTaken(_) => {
                    RestError::new(StatusCode::CONFLICT, "another room has that name")
                }
                // The unique index on (workspace, name): a rename racing another.
                store::StoreError::Sqlite(rusqlite_err) if rusqlite_err.to_string().contains("UNIQUE") => {
                    RestError::new(StatusCode::CONFLICT, "another room has that name")
                }
                other => other.into(),
            })?;
        Ok(room_json(&r, template_name(s, &r).as_deref()))
    })
    .await?;
    Ok(Json(v))
}

pub fn code_json(c: &RoomCode) -> Value {
    json!({
        "code": c.code,
        "room_id": c.room_id,
        "role": c.role,
        "enabled": c.enabled,
        "created_at": ts(c.created_at),
        "updated_at": ts(c.updated_at),
    })
}

pub async fn create_codes(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(room_id): Path<String>) -> RestResult {
    let codes = db(&st, move |s| {
        owned_room(s, &ws.id, &room_id)?;
        Ok(s.create_room_codes(&room_id)?)
    })
    .await?;
    Ok(Json(json!({ "data": codes.iter().map(code_json).collect::<Vec<_>>() })))
}

pub async fn create_code(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path((room_id, role)): Path<(String, String)>,
) -> RestResult {
    let code = db(&st, move |s| {
        owned_room(s, &ws.id, &room_id)?;
        Ok(s.create_room_code(&room_id, &role)?)
    })
    .await?;
    Ok(Json(code_json(&code)))
}

pub async fn list_codes(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path(room_id): Path<String>,
    q: QueryMap,
) -> RestResult {
    let page = page_of(&q)?;
    let limit = page.limit;
    let enabled = bool_param(&q, "enabled")?;
    let role = q.get("role").filter(|s| !s.is_empty()).cloned();
    let l = db(&st, move |s| {
        owned_room(s, &ws.id, &room_id)?;
        Ok(s.room_codes(&room_id, role.as_deref(), enabled, &page)?)
    })
    .await?;
    Ok(paginated(limit, l.data.iter().map(code_json).collect(), l.last))
}

/// `POST /v2/room-codes/code`: nothing but the two fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CodeUpdate {
    code: Field<String>,
    enabled: Field<bool>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

pub async fn update_code(State(st): State<AppState>, Mgmt(ws): Mgmt, body: Bytes) -> RestResult {
    let body: CodeUpdate = parse_request(&body)?;
    let mut problems = Problems::default();
    for k in body.other.keys() {
        problems.add(k.clone(), "only code and enabled may be given");
    }
    let code = body.code.given();
    let enabled = body.enabled.given();
    if code.is_none() {
        problems.add("code", "required");
    }
    if enabled.is_none() {
        problems.add("enabled", "required, true or false");
    }
    let (Some(code), Some(enabled), true) = (code, enabled, problems.is_empty()) else {
        return Err(problems.into_error());
    };
    let c = db(&st, move |s| {
        let c = s.room_code(&code)?.ok_or_else(|| RestError::not_found("room code not found"))?;
        owned_room(s, &ws.id, &c.room_id).map_err(|_| RestError::not_found("room code not found"))?;
        Ok(s.set_room_code_enabled(&code, enabled)?)
    })
    .await?;
    Ok(Json(code_json(&c)))
}

/// CORS for the room-code exchange: the SDK calls it from the app's page, on any origin.
fn with_cors(r: Response) -> Response {
    super::any_origin(r, "POST, OPTIONS", "content-type")
}

pub async fn token_preflight() -> Response {
    with_cors(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CodeExchange {
    code: Field<String>,
    user_id: Field<String>,
}

/// `POST /v2/token {code, user_id}` → `{token}`: no management token, the code is the
/// credential. A disabled code or room is refused (403), an unknown code is 404.
pub async fn exchange_code(State(st): State<AppState>, body: Bytes) -> Response {
    let result = async {
        let body: CodeExchange = parse_request(&body)?;
        let code =
            body.code.optional("code", "must be a string")?.ok_or_else(|| FieldError::new("code", "required"))?;
        let user_id = body.user_id.optional("user_id", "must be a string")?.unwrap_or_default();
        if user_id.len() > crate::MAX_USER_ID {
            return Err(RestError::invalid(vec![FieldError::new("user_id", "too long")]));
        }
        let user_id = if user_id.is_empty() { store::new_uuid() } else { user_id };
        db(&st, move |s| {
            let c = s.room_code(&code)?.ok_or_else(|| RestError::not_found("room code not found"))?;
            let forbidden = |m: &str| RestError::new(StatusCode::FORBIDDEN, m);
            if !c.enabled {
                return Err(forbidden("room code is disabled"));
            }
            let room = s.room(&c.room_id)?.ok_or_else(|| RestError::not_found("room not found"))?;
            if !room.enabled {
                return Err(forbidden("room is disabled"));
            }
            let ws = s.workspace(&room.workspace_id)?.ok_or_else(|| RestError::not_found("workspace not found"))?;
            let token =
                store::token::mint_auth_token(&ws, &room.id, &user_id, &c.role, DEFAULT_TOKEN_TTL, SystemTime::now());
            Ok(json!({ "token": token }))
        })
        .await
    }
    .await;
    with_cors(match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuthTokenRequest {
    room_id: Field<String>,
    role: Field<String>,
    user_id: Field<String>,
    expires_in: Field<u64>,
}

/// `POST /v2/auth-tokens {room_id, role, user_id, expires_in?}` → `{token, room_id, role,
/// user_id, expires_at}`: what an app server would otherwise mint with a JWT library.
pub async fn auth_token(State(st): State<AppState>, Mgmt(ws): Mgmt, body: Bytes) -> RestResult {
    let body: AuthTokenRequest = parse_request(&body)?;
    let mut problems = Problems::default();
    // A value of another type counts as none.
    let room_id = body.room_id.given().unwrap_or_default();
    let role = body.role.given().unwrap_or_default();
    let user_id = body.user_id.given().unwrap_or_default();
    if room_id.is_empty() {
        problems.add("room_id", "required");
    }
    if role.is_empty() {
        problems.add("role", "required");
    }
    if user_id.len() > crate::MAX_USER_ID {
        problems.add("user_id", "too long");
    }
    let ttl = problems
        .optional_if(
            body.expires_in,
            "expires_in",
            |s| (1..=MAX_TOKEN_TTL).contains(s),
            format!("seconds, from 1 to {MAX_TOKEN_TTL}"),
        )
        .unwrap_or(DEFAULT_TOKEN_TTL.as_secs());
    problems.finish()?;
    let user_id = if user_id.is_empty() { store::new_uuid() } else { user_id };
    let v = db(&st, move |s| {
        let room = owned_room(s, &ws.id, &room_id)?;
        let t = s.template(&room.template_id)?.ok_or_else(|| RestError::not_found("template not found"))?;
        if !t.roles.contains_key(&role) {
            return Err(RestError::invalid(vec![FieldError::new(
                "role",
                format!("no role {role:?} in the room's template"),
            )]));
        }
        let now = SystemTime::now();
        let token = store::token::mint_auth_token(&ws, &room.id, &user_id, &role, Duration::from_secs(ttl), now);
        let exp = now + Duration::from_secs(ttl);
        Ok(json!({
            "token": token,
            "room_id": room.id,
            "role": role,
            "user_id": user_id,
            "expires_at": store::time::format_ms(store::time::unix_ms(exp)),
        }))
    })
    .await?;
    Ok(Json(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(v: Value) -> Result<Map<String, Value>, Vec<String>> {
        let body: RoomAttrs = serde_json::from_value(v).expect("tests pass objects");
        room_attrs(body, None).map_err(|e| e.details)
    }

    #[test]
    fn room_fields_follow_100ms_limits() {
        assert!(attrs(json!({"name": "r", "region": "eu", "size": 100, "max_duration_seconds": 3600})).is_ok());
        assert_eq!(
            attrs(json!({"size": 3000})).unwrap_err(),
            ["size: room size greater than 2500, set large_room flag as true"]
        );
        assert!(attrs(json!({"size": 3000, "large_room": true})).is_ok());
        assert_eq!(attrs(json!({"size": 30000, "large_room": true})).unwrap_err().len(), 1);
        assert_eq!(
            attrs(json!({"max_duration_seconds": 60})).unwrap_err(),
            ["max_duration_seconds: must be from 120 to 43200"]
        );
        assert_eq!(attrs(json!({"region": "mars"})).unwrap_err(), ["region: region not supported (in, us, eu, auto)"]);
        assert_eq!(attrs(json!({"template": "default"})).unwrap_err(), ["template: not supported: pass template_id"]);
        assert_eq!(
            attrs(json!({"webhook": {"url": "ftp://x"}})).unwrap_err(),
            ["webhook.url: an http:// or https:// URL is required"]
        );
        let a = attrs(json!({"webhook": {"url": "http://127.0.0.1:9/h", "headers": {"x-k": "v"}}})).unwrap();
        assert_eq!(a["webhook"]["secret"].as_str().unwrap().len(), 64);
    }
}
