//! `/v2/templates`: templates, their roles, settings, destinations and recording configs.
//!
//! A template is checked whole ([`store::template::TemplateInput::check`]) on every write, so a
//! role update that would leave another role subscribing to a deleted role is refused, not
//! stored.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use store::template::{FieldError, TemplateInput, check_parts, check_role_references, role_from_input};
use store::{Role, Template, TemplateParts};

use super::{Mgmt, QueryMap, RestError, RestResult, db, page_of, paginated, parse_body, ts};
use crate::http::AppState;

/// The REST shape of a template.
pub fn template_json(t: &Template) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "customer_id": t.workspace_id,
        "app_id": t.workspace_id,
        "roles": t.roles,
        "settings": t.parts.settings,
        "destinations": t.parts.destinations,
        "plugins": t.parts.plugins,
        "recordings": t.parts.recordings,
        "createdAt": ts(t.created_at),
        "updatedAt": ts(t.updated_at),
    })
}

pub(super) fn owned(store: &store::Store, ws: &str, id: &str) -> Result<Template, RestError> {
    store.template_in(ws, id)?.ok_or_else(|| RestError::not_found("template not found"))
}

pub async fn create(State(st): State<AppState>, Mgmt(ws): Mgmt, body: Bytes) -> RestResult {
    let input: TemplateInput = parse_body(&body)?;
    let checked = input.check().map_err(RestError::invalid)?;
    let t = db(&st, move |s| Ok(s.save_template(&ws.id, None, &checked)?)).await?;
    Ok(Json(template_json(&t)))
}

pub async fn list(State(st): State<AppState>, Mgmt(ws): Mgmt, q: QueryMap) -> RestResult {
    let page = page_of(&q)?;
    let limit = page.limit;
    let l = db(&st, move |s| Ok(s.templates(&ws.id, &page)?)).await?;
    Ok(paginated(limit, l.data.iter().map(template_json).collect(), l.last))
}

pub async fn get_one(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    let t = db(&st, move |s| owned(s, &ws.id, &id)).await?;
    Ok(Json(template_json(&t)))
}

pub async fn update(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>, body: Bytes) -> RestResult {
    let mut input: TemplateInput = parse_body(&body)?;
    let t = db(&st, move |s| {
        let current = owned(s, &ws.id, &id)?;
        // Full replace, but a missing name keeps the current one.
        input.name.get_or_insert(current.name);
        let checked = input.check().map_err(RestError::invalid)?;
        Ok(s.save_template(&ws.id, Some(&id), &checked)?)
    })
    .await?;
    Ok(Json(template_json(&t)))
}

pub async fn get_role(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path((id, role)): Path<(String, String)>,
) -> RestResult {
    let t = db(&st, move |s| owned(s, &ws.id, &id)).await?;
    let r = t.roles.get(&role).ok_or_else(|| RestError::not_found(format!("role {role:?} not found")))?;
    Ok(Json(serde_json::to_value(r).unwrap_or_default()))
}

/// Checks the roles of a template after a change to one of them.
fn check_roles(roles: &BTreeMap<String, Role>) -> Result<(), RestError> {
    let mut errors = Vec::new();
    if roles.is_empty() {
        errors.push(FieldError::new("roles", "a template needs at least one role"));
    }
    check_role_references(roles, &mut errors);
    if errors.is_empty() { Ok(()) } else { Err(RestError::invalid(errors)) }
}

pub async fn put_role(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path((id, role)): Path<(String, String)>,
    body: Bytes,
) -> RestResult {
    let input: Value = parse_body(&body)?;
    let r = db(&st, move |s| {
        let t = owned(s, &ws.id, &id)?;
        let mut roles = t.roles.clone();
        // Update merges into the existing role; create starts from the defaults.
        let new_name = input.get("name").and_then(Value::as_str).unwrap_or(&role).to_owned();
        let mut base = match roles.remove(&role) {
            Some(existing) => serde_json::to_value(&existing).unwrap_or_default(),
            None => json!({}),
        };
        store::template::merge_json(&mut base, &input);
        let mut errors = Vec::new();
        let built = role_from_input(&new_name, &base, &format!("roles.{new_name}"), &mut errors);
        let Some(mut built) = built.filter(|_| errors.is_empty()) else {
            return Err(RestError::invalid(errors));
        };
        if new_name != role {
            for target in &mut built.subscribe_params.subscribe_to_roles {
                if *target == role {
                    target.clone_from(&new_name);
                }
            }
            if roles.contains_key(&new_name) {
                return Err(RestError::new(StatusCode::CONFLICT, format!("role {new_name:?} already exists")));
            }
            // A rename carries the subscriptions to the old name along.
            for other in roles.values_mut() {
                for target in &mut other.subscribe_params.subscribe_to_roles {
                    if *target == role {
                        target.clone_from(&new_name);
                    }
                }
            }
        }
        roles.insert(new_name.clone(), built);
        check_roles(&roles)?;
        let t = s.set_template_roles(&t.id, &roles)?;
        Ok(t.roles.get(&new_name).cloned())
    })
    .await?;
    Ok(Json(serde_json::to_value(r).unwrap_or_default()))
}

pub async fn delete_role(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path((id, role)): Path<(String, String)>,
) -> Result<impl IntoResponse, RestError> {
    db(&st, move |s| {
        let t = owned(s, &ws.id, &id)?;
        let mut roles = t.roles.clone();
        if roles.remove(&role).is_none() {
            return Err(RestError::not_found(format!("role {role:?} not found")));
        }
        // Nobody subscribes to a role that is gone.
        for other in roles.values_mut() {
            other.subscribe_params.subscribe_to_roles.retain(|r| *r != role);
        }
        check_roles(&roles)?;
        s.set_template_roles(&t.id, &roles)?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which of the JSON parts a route reads or replaces.
#[derive(Clone, Copy)]
enum Part {
    Settings,
    Destinations,
    Recordings,
}

fn part_of(parts: &TemplateParts, p: Part) -> &Value {
    match p {
        Part::Settings => &parts.settings,
        Part::Destinations => &parts.destinations,
        Part::Recordings => &parts.recordings,
    }
}

async fn get_part(st: AppState, ws: store::Workspace, id: String, p: Part) -> RestResult {
    let t = db(&st, move |s| owned(s, &ws.id, &id)).await?;
    Ok(Json(part_of(&t.parts, p).clone()))
}

async fn set_part(st: AppState, ws: store::Workspace, id: String, p: Part, body: Bytes) -> RestResult {
    let value: Value = parse_body(&body)?;
    let t = db(&st, move |s| {
        let t = owned(s, &ws.id, &id)?;
        let mut parts = t.parts.clone();
        match p {
            Part::Settings => parts.settings = value,
            Part::Destinations => parts.destinations = value,
            Part::Recordings => parts.recordings = value,
        }
        let mut errors = Vec::new();
        check_parts(&parts, &mut errors);
        if !errors.is_empty() {
            return Err(RestError::invalid(errors));
        }
        Ok(s.set_template_parts(&t.id, &parts)?)
    })
    .await?;
    Ok(Json(part_of(&t.parts, p).clone()))
}

pub async fn get_settings(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    get_part(st, ws, id, Part::Settings).await
}
pub async fn set_settings(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path(id): Path<String>,
    body: Bytes,
) -> RestResult {
    set_part(st, ws, id, Part::Settings, body).await
}
pub async fn get_destinations(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    get_part(st, ws, id, Part::Destinations).await
}
pub async fn set_destinations(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path(id): Path<String>,
    body: Bytes,
) -> RestResult {
    set_part(st, ws, id, Part::Destinations, body).await
}
pub async fn get_recordings(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    get_part(st, ws, id, Part::Recordings).await
}
pub async fn set_recordings(
    State(st): State<AppState>,
    Mgmt(ws): Mgmt,
    Path(id): Path<String>,
    body: Bytes,
) -> RestResult {
    set_part(st, ws, id, Part::Recordings, body).await
}
