//! `/v2/polls`: polls and quizzes made by the app server (100ms's polls API), the same rows the
//! SDK's `poll-*` methods use (`store::poll`). A poll made here belongs to no room until a room
//! lists it in its `polls` attribute (`POST /v2/rooms {.., polls: [id]}`) and a peer there
//! starts it; then its responses and results read here.
//!
//! - `POST /v2/polls`: create, `{id?, title, type, duration, anonymous, mode, start, vote,
//!   responses, questions: [{text, type, skippable, once, weight, options: [{text, weight}],
//!   answer: {hidden, option, options, text, case, trim}}]}`.
//! - `POST /v2/polls/{poll_id}`: rewrite (only while no room has started it: 409 after).
//! - `GET /v2/polls/{poll_id}`, `GET /v2/polls/{poll_id}/responses`, `GET
//!   /v2/polls/{poll_id}/results` (counts per question, and a quiz's ranking).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use store::poll::check::{self, check_info, check_questions};
use store::poll::{self as polls, Poll, PollResponse};

use super::{Mgmt, QueryMap, RestError, RestResult, db, page_of, parse_body};
use crate::http::AppState;

fn poll_json(p: &Poll) -> Value {
    let mut v = Value::Object(p.info.clone());
    v["id"] = json!(p.id);
    v["state"] = json!(p.state);
    v["room_id"] = json!(p.room_id);
    v["session_id"] = json!(p.session_id);
    v["created_at"] = json!(store::time::format_ms(p.created_at));
    for (k, at) in [("started_at", p.started_at), ("stopped_at", p.stopped_at)] {
        if at > 0 {
            v[k] = json!(store::time::format_ms(at));
        }
    }
    // Flat, as 100ms's REST shape has it: the question's fields, its options and answer.
    v["questions"] = json!(
        p.questions
            .iter()
            .map(|q| {
                let mut flat = q["question"].clone();
                flat["options"] = q["options"].clone();
                flat["answer"] = q["answer"].clone();
                flat
            })
            .collect::<Vec<_>>()
    );
    v
}

fn response_json(r: &PollResponse) -> Value {
    let mut v = r.body.clone();
    for (k, val) in [
        ("id", json!(r.id)),
        ("poll_id", json!(r.poll_id)),
        ("session_id", json!(r.session_id)),
        ("question", json!(r.question)),
        ("peer_id", json!(r.peer_id)),
        ("user_id", json!(r.user_id)),
        ("username", json!(r.username)),
        ("sent_at", json!(store::time::format_ms(r.created_at))),
    ] {
        v[k] = val;
    }
    v
}

/// The poll a body describes; `id` is the path's on a rewrite.
fn poll_from(body: &Value, workspace_id: &str, id: Option<&str>) -> Result<Poll, RestError> {
    let mut errors = Vec::new();
    let info = check_info(body, &mut errors);
    let questions = check_questions(body.get("questions").unwrap_or(&json!([])), &mut errors);
    let id = match id {
        Some(id) => id.to_owned(),
        None => body.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
    };
    if id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        errors.push(store::template::FieldError::new("id", "up to 64 letters, digits, '-' or '_'"));
    }
    if !errors.is_empty() {
        return Err(RestError::invalid(errors));
    }
    Ok(Poll {
        id,
        workspace_id: workspace_id.to_owned(),
        room_id: String::new(),
        state: polls::CREATED.into(),
        info,
        questions,
        session_id: String::new(),
        created_by: String::new(),
        started_by: String::new(),
        stopped_by: String::new(),
        created_at: 0,
        started_at: 0,
        stopped_at: 0,
    })
}

fn owned(s: &store::Store, ws: &str, id: &str) -> Result<Poll, RestError> {
    s.poll(id)?.filter(|p| p.workspace_id == ws).ok_or_else(|| RestError::not_found("poll not found"))
}

pub async fn create(State(st): State<AppState>, Mgmt(ws): Mgmt, body: Bytes) -> RestResult {
    let body: Value = parse_body(&body)?;
    let poll = poll_from(&body, &ws.id, None)?;
    let saved = db(&st, move |s| {
        if !poll.id.is_empty() && s.poll(&poll.id)?.is_some() {
            return Err(RestError::new(StatusCode::CONFLICT, format!("poll id {} is taken", poll.id)));
        }
        s.save_poll(&poll)?.ok_or_else(|| RestError::internal("the new poll was not stored"))
    })
    .await?;
    Ok(Json(poll_json(&saved)))
}

pub async fn update(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>, body: Bytes) -> RestResult {
    let body: Value = parse_body(&body)?;
    let poll = poll_from(&body, &ws.id, Some(&id))?;
    let saved = db(&st, move |s| {
        let old = owned(s, &ws.id, &id)?;
        let poll = Poll { room_id: old.room_id, ..poll };
        s.save_poll(&poll)?
            .ok_or_else(|| RestError::new(StatusCode::CONFLICT, "a started or stopped poll cannot be changed"))
    })
    .await?;
    Ok(Json(poll_json(&saved)))
}

pub async fn get_one(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    let p = db(&st, move |s| owned(s, &ws.id, &id)).await?;
    Ok(Json(poll_json(&p)))
}

/// `{limit, data, last}` of the poll's responses, oldest first; `question=<n>` filters.
pub async fn responses(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>, q: QueryMap) -> RestResult {
    let page = page_of(&q)?;
    let question = match q.get("question").filter(|s| !s.is_empty()) {
        None => None,
        Some(n) => Some(n.parse::<u32>().map_err(|_| {
            RestError::invalid(vec![store::template::FieldError::new("question", "a question's index (1, 2, ...)")])
        })?),
    };
    let all = db(&st, move |s| {
        let p = owned(s, &ws.id, &id)?;
        Ok(s.poll_responses(&p.id, None)?)
    })
    .await?;
    let mut rows: Vec<&PollResponse> = all.iter().filter(|r| question.is_none_or(|n| r.question == n)).collect();
    if let Some(start) = &page.start {
        let at = rows.iter().position(|r| &r.id == start).map_or(rows.len(), |i| i + 1);
        rows.drain(..at);
    }
    let limit = page.limit as usize;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let last = if more { rows.last().map(|r| r.id.clone()) } else { None };
    Ok(super::paginated(page.limit, rows.into_iter().map(response_json).collect(), last))
}

/// The counts per question, and a quiz's ranking.
pub async fn results(State(st): State<AppState>, Mgmt(ws): Mgmt, Path(id): Path<String>) -> RestResult {
    let (p, all) = db(&st, move |s| {
        let p = owned(s, &ws.id, &id)?;
        let all = s.poll_responses(&p.id, None)?;
        Ok((p, all))
    })
    .await?;
    let mut v = check::results(&p, &all, 0);
    if p.info.get("type").and_then(Value::as_str) == Some("quiz") {
        v["leaderboard"] = check::leaderboard(&p, &all, 0, 100);
    }
    Ok(Json(v))
}
