//! Polls and quizzes (100ms's `/v2/polls` and the SDK's `poll-*` methods): a poll's settings
//! and questions, its state (`created` → `started` → `stopped`), the room it runs in, and the
//! peers' responses, one per peer and question (a later one replaces it only if the question
//! allows updates).
//!
//! A poll made over REST belongs to no room until a room lists it (the room's `polls`
//! attribute) and a peer starts it there; one made by a peer (`poll-info-set`) belongs to the
//! peer's room. `check.rs` holds the checks, the scoring and the counts.

pub mod check;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::db::{Conn, Row, vals};
use crate::ids::new_id;
use crate::time::unix_ms;
use crate::{Store, StoreError};

pub const CREATED: &str = "created";
pub const STARTED: &str = "started";
pub const STOPPED: &str = "stopped";

/// Most polls a room lists.
pub const MAX_POLLS_PER_ROOM: usize = 200;

/// One poll.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Poll {
    pub id: String,
    pub workspace_id: String,
    /// The room it runs in; empty for a REST poll no room has started yet.
    pub room_id: String,
    pub state: String,
    /// The settings `check::check_info` keeps (`title`, `type`, `duration`, ...).
    pub info: Map<String, Value>,
    /// `[{question: {index, text, type, ...}, options: [{index, text}], answer: {...}}]`.
    pub questions: Vec<Value>,
    pub session_id: String,
    pub created_by: String,
    pub started_by: String,
    pub stopped_by: String,
    /// Unix ms; 0 when it has not happened.
    pub created_at: i64,
    pub started_at: i64,
    pub stopped_at: i64,
}

impl Poll {
    /// The poll as the SDK reads it (`PollInfoParams`): its settings, id, state and times.
    pub fn info_params(&self) -> Value {
        let mut v = Value::Object(self.info.clone());
        v["poll_id"] = json!(self.id);
        v["state"] = json!(self.state);
        v["questions_count"] = json!(self.questions.len());
        for (k, by) in
            [("created_by", &self.created_by), ("started_by", &self.started_by), ("stopped_by", &self.stopped_by)]
        {
            if !by.is_empty() {
                v[k] = json!(by);
            }
        }
        for (k, at) in
            [("created_at", self.created_at), ("started_at", self.started_at), ("stopped_at", self.stopped_at)]
        {
            if at > 0 {
                v[k] = json!(at);
            }
        }
        v
    }

    /// Whether a peer in `role` may vote: everyone when the poll names no roles.
    pub fn may_vote(&self, role: &str) -> bool {
        roles_allow(self.info.get("vote"), role)
    }

    /// Whether a peer in `role` may see everyone's responses: everyone when none are named.
    pub fn may_see_responses(&self, role: &str) -> bool {
        roles_allow(self.info.get("responses"), role)
    }
}

fn roles_allow(list: Option<&Value>, role: &str) -> bool {
    match list.and_then(Value::as_array) {
        Some(roles) if !roles.is_empty() => roles.iter().any(|r| r == role),
        _ => true,
    }
}

/// One peer's response to one question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PollResponse {
    pub id: String,
    pub poll_id: String,
    pub session_id: String,
    pub peer_id: String,
    pub user_id: String,
    pub username: String,
    pub question: u32,
    /// `{type, skipped?, option?, options?, text?, duration, update?}`.
    pub body: Value,
    pub created_at: i64,
}

impl PollResponse {
    /// The responder as the SDK reads it (`PollResponsePeerInfo`).
    pub fn peer_info(&self) -> Value {
        json!({ "peerid": self.peer_id, "userid": self.user_id, "username": self.username, "hash": self.peer_id })
    }

    /// The response as `poll-responses` answers it.
    pub fn sdk(&self) -> Value {
        let mut response = self.body.clone();
        response["question"] = json!(self.question);
        response["response_id"] = json!(self.id);
        json!({ "final": true, "response": response, "peer": self.peer_info() })
    }
}

const POLL_COLS: &str = "id, workspace_id, room_id, state, body, created_at";

fn poll_row(r: &Row) -> Result<Poll, StoreError> {
    let body: Value = serde_json::from_str(&r.text(4)?)?;
    let text = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
    let ms = |k: &str| body[k].as_i64().unwrap_or(0);
    Ok(Poll {
        id: r.text(0)?,
        workspace_id: r.text(1)?,
        room_id: r.text(2)?,
        state: r.text(3)?,
        info: body["info"].as_object().cloned().unwrap_or_default(),
        questions: body["questions"].as_array().cloned().unwrap_or_default(),
        session_id: text("session_id"),
        created_by: text("created_by"),
        started_by: text("started_by"),
        stopped_by: text("stopped_by"),
        created_at: r.int(5)?,
        started_at: ms("started_at"),
        stopped_at: ms("stopped_at"),
    })
}

fn poll_body(p: &Poll) -> String {
    json!({
        "info": p.info,
        "questions": p.questions,
        "session_id": p.session_id,
        "created_by": p.created_by,
        "started_by": p.started_by,
        "stopped_by": p.stopped_by,
        "started_at": p.started_at,
        "stopped_at": p.stopped_at,
    })
    .to_string()
}

const RESPONSE_COLS: &str = "id, poll_id, session_id, peer_id, user_id, username, question, body, created_at";

fn response_row(r: &Row) -> Result<PollResponse, StoreError> {
    Ok(PollResponse {
        id: r.text(0)?,
        poll_id: r.text(1)?,
        session_id: r.text(2)?,
        peer_id: r.text(3)?,
        user_id: r.text(4)?,
        username: r.text(5)?,
        question: u32::try_from(r.int(6)?).map_err(|_| StoreError::BadValue("question".into()))?,
        body: serde_json::from_str(&r.text(7)?)?,
        created_at: r.int(8)?,
    })
}

fn poll_in(conn: &Conn, id: &str) -> Result<Option<Poll>, StoreError> {
    let sql = format!("SELECT {POLL_COLS} FROM polls WHERE id = ?1");
    conn.query_opt(&sql, &vals![id])?.as_ref().map(poll_row).transpose()
}

/// What adding a response did.
#[derive(Debug, Clone, PartialEq)]
pub enum Answered {
    Stored(PollResponse),
    /// The peer already answered that question, and it does not take updates.
    AlreadyAnswered,
}

impl Store {
    /// A new poll (`created`), or the `created` poll `p.id` rewritten. A started or stopped
    /// poll is not rewritten: `Ok(None)`.
    pub fn save_poll(&self, p: &Poll) -> Result<Option<Poll>, StoreError> {
        let now = unix_ms(std::time::SystemTime::now());
        self.conn.with_tx(|tx| {
            match poll_in(tx, &p.id)? {
                Some(old) if old.workspace_id != p.workspace_id || old.state != CREATED => return Ok(None),
                Some(old) => {
                    let p = Poll { created_at: old.created_at, created_by: old.created_by.clone(), ..p.clone() };
                    tx.execute(
                        "UPDATE polls SET room_id = ?1, state = ?2, body = ?3, updated_at = ?4 WHERE id = ?5",
                        &vals![&p.room_id, &p.state, &poll_body(&p), now, &p.id],
                    )?;
                }
                None => {
                    let id = if p.id.is_empty() { new_id() } else { p.id.clone() };
                    let p = Poll { id, created_at: now, ..p.clone() };
                    tx.execute(
                        "INSERT INTO polls (id, workspace_id, room_id, state, body, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                        &vals![&p.id, &p.workspace_id, &p.room_id, &p.state, &poll_body(&p), now],
                    )?;
                    return poll_in(tx, &p.id);
                }
            }
            poll_in(tx, &p.id)
        })
    }

    pub fn poll(&self, id: &str) -> Result<Option<Poll>, StoreError> {
        poll_in(&self.conn, id)
    }

    /// The polls of a room in `state` (any state if `None`), oldest first: those it runs and
    /// the REST polls it lists (`listed`) that no room has taken.
    pub fn room_polls(
        &self,
        workspace_id: &str,
        room_id: &str,
        listed: &[String],
        state: Option<&str>,
    ) -> Result<Vec<Poll>, StoreError> {
        let sql = format!(
            "SELECT {POLL_COLS} FROM polls WHERE workspace_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR state = ?2)
             AND (room_id = ?3 OR room_id = '') ORDER BY created_at, id"
        );
        let rows = self.conn.query(&sql, &vals![workspace_id, state, room_id])?;
        let mut polls = Vec::new();
        for r in &rows {
            let p = poll_row(r)?;
            if p.room_id == room_id || listed.contains(&p.id) {
                polls.push(p);
            }
            if polls.len() >= MAX_POLLS_PER_ROOM {
                break;
            }
        }
        Ok(polls)
    }

    /// Moves a poll from `from` to `to` in `room_id` (a start takes a REST poll into the room),
    /// stamping who and when. `Ok(None)` when the poll is not in state `from` (or runs in
    /// another room).
    pub fn move_poll(
        &self,
        id: &str,
        room_id: &str,
        session_id: &str,
        from: &str,
        to: &str,
        by: &str,
    ) -> Result<Option<Poll>, StoreError> {
        let now = unix_ms(std::time::SystemTime::now());
        self.conn.with_tx(|tx| {
            let Some(mut p) = poll_in(tx, id)? else { return Ok(None) };
            if p.state != from || !(p.room_id.is_empty() || p.room_id == room_id) {
                return Ok(None);
            }
            p.state = to.to_owned();
            p.room_id = room_id.to_owned();
            if to == STARTED {
                (p.started_by, p.started_at, p.session_id) = (by.to_owned(), now, session_id.to_owned());
            } else {
                (p.stopped_by, p.stopped_at) = (by.to_owned(), now);
            }
            tx.execute(
                "UPDATE polls SET room_id = ?1, state = ?2, body = ?3, updated_at = ?4 WHERE id = ?5",
                &vals![&p.room_id, &p.state, &poll_body(&p), now, id],
            )?;
            Ok(Some(p))
        })
    }

    /// Keeps one response; a second to the same question replaces the first only with
    /// `update` (and a question not marked `once`).
    pub fn answer_poll(&self, r: &PollResponse, update: bool, once: bool) -> Result<Answered, StoreError> {
        let now = unix_ms(std::time::SystemTime::now());
        self.conn.with_tx(|tx| {
            let existing = tx.query_opt(
                "SELECT id FROM poll_responses WHERE poll_id = ?1 AND peer_id = ?2 AND question = ?3",
                &vals![&r.poll_id, &r.peer_id, r.question],
            )?;
            let body = r.body.to_string();
            let id = match existing {
                Some(_) if !update || once => return Ok(Answered::AlreadyAnswered),
                Some(row) => {
                    let id = row.text(0)?;
                    tx.execute(
                        "UPDATE poll_responses SET body = ?1, created_at = ?2 WHERE id = ?3",
                        &vals![&body, now, &id],
                    )?;
                    id
                }
                None => {
                    let id = new_id();
                    tx.execute(
                        &format!(
                            "INSERT INTO poll_responses ({RESPONSE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                        ),
                        &vals![
                            &id,
                            &r.poll_id,
                            &r.session_id,
                            &r.peer_id,
                            &r.user_id,
                            &r.username,
                            r.question,
                            &body,
                            now
                        ],
                    )?;
                    id
                }
            };
            Ok(Answered::Stored(PollResponse { id, created_at: now, ..r.clone() }))
        })
    }

    /// A poll's responses in the order given, of one peer if `peer_id` is given.
    pub fn poll_responses(&self, poll_id: &str, peer_id: Option<&str>) -> Result<Vec<PollResponse>, StoreError> {
        let sql = format!(
            "SELECT {RESPONSE_COLS} FROM poll_responses WHERE poll_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR peer_id = ?2)
             ORDER BY created_at, id"
        );
        self.conn.query(&sql, &vals![poll_id, peer_id])?.iter().map(response_row).collect()
    }
}

#[cfg(test)]
mod tests;
