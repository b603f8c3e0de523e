//! Polls and quizzes as the SDK runs them (`poll-info-set`, `poll-info-get`,
//! `poll-questions-set`, `poll-questions-get`, `poll-start`, `poll-stop`, `poll-response`,
//! `poll-list`, `poll-responses`, `poll-result`, `poll-leaderboard`; pushes `on-poll-start`,
//! `on-poll-stop`, `on-poll-stats`), kept in the platform database (`store::poll`) so the REST
//! API (`/v2/polls`) sees the same polls and answers.
//!
//! - Making, changing, starting and stopping a poll needs `pollWrite`; reading a draft too.
//! - A started or stopped poll may be read by any joined peer (the SDK fetches its questions
//!   when told it started).
//! - Voting needs a started poll and a role among its `vote` roles (any role when it names
//!   none). Everyone's responses and the leaderboard need `pollRead` or `pollWrite`, or a role
//!   among its `responses` roles; a peer always sees its own.
//! - `on-poll-start` and `on-poll-stop` go to every joined peer; `on-poll-stats` (the counts)
//!   after each vote to every joined peer who may see them.
//! - A room's polls are those its peers made and the REST polls the room lists (its `polls`
//!   attribute, 100ms's way of linking them).

use serde::Deserialize;
use serde_json::{Value, json};
use store::poll::check::{self, check_info, check_questions};
use store::poll::{self as polls, Answered, Poll, PollResponse};
use util::LockExt;

use super::rpc::Param;
use super::{Refusal, Room};
use crate::rpc::code;

/// `{poll_id}` and the paging fields of the poll methods.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct PollParams {
    pub poll_id: Param<String>,
    pub index: Param<u64>,
    pub count: Param<u64>,
    pub offset: Param<u64>,
    #[serde(rename = "self")]
    pub own: Param<bool>,
    pub state: Param<String>,
    pub questions: Option<Value>,
    pub responses: Option<Value>,
}

impl Room {
    fn poll_store(&self) -> Result<std::sync::Arc<std::sync::Mutex<store::Store>>, Refusal> {
        self.env.store.clone().ok_or_else(|| {
            Refusal::new(code::NOT_IMPLEMENTED, "polls need the platform database (signaling runs without one)")
        })
    }

    /// The REST polls this room lists (its `polls` attribute: ids, or `{id}` objects).
    fn listed_polls(&self) -> Vec<String> {
        let record = self.env.room_record(&self.id);
        let list =
            record.as_ref().and_then(|r| r.attrs.get("polls")).and_then(Value::as_array).cloned().unwrap_or_default();
        list.iter().filter_map(|p| p.as_str().or_else(|| p["id"].as_str()).map(str::to_owned)).collect()
    }

    /// Poll `id` if it is this room's: one it runs, or a REST poll it lists.
    fn room_poll(&self, id: &str) -> Result<Poll, Refusal> {
        let store = self.poll_store()?;
        let poll = store.lock_unpoisoned().poll(id).map_err(internal)?;
        poll.filter(|p| {
            p.workspace_id == self.template.workspace_id
                && (p.room_id == self.id || (p.room_id.is_empty() && self.listed_polls().iter().any(|l| l == id)))
        })
        .ok_or_else(|| Refusal::new(code::NOT_FOUND, format!("no poll {id} in this room")))
    }

    fn poll_permissions(&self, peer_id: &str) -> Result<(String, bool, bool), Refusal> {
        let peer = self.requester(peer_id)?;
        let p = self.role(&peer.role).map(|r| (r.permissions.poll_read, r.permissions.poll_write)).unwrap_or_default();
        Ok((peer.role.clone(), p.0 || p.1, p.1))
    }

    fn poll_id(params: &PollParams) -> Result<String, Refusal> {
        match &params.poll_id {
            Param::Valid(id) if !id.is_empty() => Ok(id.clone()),
            _ => Err(Refusal::new(code::INVALID_PARAMS, "poll_id is needed")),
        }
    }

    /// `poll-info-set`: a new poll (or a draft rewritten), with the SDK's `PollInfoParams`.
    pub(super) fn poll_info_set(&mut self, peer_id: &str, params: Value) -> Result<Value, Refusal> {
        self.require(peer_id, |p| p.poll_write, "pollWrite")?;
        let mut errors = Vec::new();
        let info = check_info(&params, &mut errors);
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        let id = params.get("poll_id").and_then(Value::as_str).unwrap_or_default();
        if id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(Refusal::new(code::BAD_REQUEST, "poll_id is up to 64 letters, digits, '-' or '_'"));
        }
        let store = self.poll_store()?;
        let existing = if id.is_empty() { None } else { store.lock_unpoisoned().poll(id).map_err(internal)? };
        let questions = match &existing {
            Some(p)
                if p.workspace_id == self.template.workspace_id && (p.room_id == self.id || p.room_id.is_empty()) =>
            {
                p.questions.clone()
            }
            Some(_) => return Err(Refusal::new(code::CONFLICT, format!("poll id {id} is taken"))),
            None => Vec::new(),
        };
        let poll = Poll {
            id: id.to_owned(),
            workspace_id: self.template.workspace_id.clone(),
            room_id: self.id.clone(),
            state: polls::CREATED.into(),
            info,
            questions,
            session_id: String::new(),
            created_by: peer_id.to_owned(),
            started_by: String::new(),
            stopped_by: String::new(),
            created_at: 0,
            started_at: 0,
            stopped_at: 0,
        };
        if existing.is_none() && self.room_polls(None)?.len() >= polls::MAX_POLLS_PER_ROOM {
            return Err(Refusal::new(
                code::TOO_LARGE,
                format!("a room has at most {} polls", polls::MAX_POLLS_PER_ROOM),
            ));
        }
        let saved = store.lock_unpoisoned().save_poll(&poll).map_err(internal)?;
        let saved = saved.ok_or_else(|| Refusal::new(code::CONFLICT, "a started or stopped poll cannot be changed"))?;
        Ok(json!({ "poll_id": saved.id }))
    }

    fn room_polls(&self, state: Option<&str>) -> Result<Vec<Poll>, Refusal> {
        let store = self.poll_store()?;
        let listed = self.listed_polls();
        let polls = store.lock_unpoisoned().room_polls(&self.template.workspace_id, &self.id, &listed, state);
        polls.map_err(internal)
    }

    /// A poll the caller may read: drafts only with `pollWrite`.
    fn readable_poll(&self, peer_id: &str, params: &PollParams) -> Result<(Poll, String, bool), Refusal> {
        let (role, read, write) = self.poll_permissions(peer_id)?;
        let poll = self.room_poll(&Self::poll_id(params)?)?;
        if poll.state == polls::CREATED && !write {
            return Err(Refusal::new(code::FORBIDDEN, "a poll not started yet needs the 'pollWrite' permission"));
        }
        let sees_all = read || poll.may_see_responses(&role);
        Ok((poll, role, sees_all))
    }

    pub(super) fn poll_info_get(&self, peer_id: &str, params: PollParams) -> Result<Value, Refusal> {
        Ok(self.readable_poll(peer_id, &params)?.0.info_params())
    }

    /// `poll-questions-set {poll_id, questions}`: replaces a draft's questions.
    pub(super) fn poll_questions_set(&mut self, peer_id: &str, params: PollParams) -> Result<Value, Refusal> {
        self.require(peer_id, |p| p.poll_write, "pollWrite")?;
        let mut poll = self.room_poll(&Self::poll_id(&params)?)?;
        let mut errors = Vec::new();
        poll.questions = check_questions(params.questions.as_ref().unwrap_or(&Value::Null), &mut errors);
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        poll.room_id = self.id.clone();
        let saved = self.poll_store()?.lock_unpoisoned().save_poll(&poll).map_err(internal)?;
        let saved = saved.ok_or_else(|| Refusal::new(code::CONFLICT, "a started or stopped poll cannot be changed"))?;
        Ok(json!({ "poll_id": saved.id, "total_questions": saved.questions.len() }))
    }

    /// `poll-questions-get {poll_id, index, count}`: questions from `index` (1-based; 0 is the
    /// start).
    pub(super) fn poll_questions_get(&self, peer_id: &str, params: PollParams) -> Result<Value, Refusal> {
        let (poll, _, _) = self.readable_poll(peer_id, &params)?;
        let from = params.index.valid().unwrap_or(0).saturating_sub(1) as usize;
        let count = params.count.valid().unwrap_or(50).clamp(1, 50) as usize;
        let questions: Vec<Value> = poll.questions.iter().skip(from).take(count).cloned().collect();
        let last = from + questions.len() >= poll.questions.len();
        Ok(json!({ "poll_id": poll.id, "questions": questions, "last": last }))
    }

    /// `poll-start` and `poll-stop`.
    pub(super) fn poll_move(&mut self, peer_id: &str, params: PollParams, start: bool) -> Result<Value, Refusal> {
        self.require(peer_id, |p| p.poll_write, "pollWrite")?;
        let poll = self.room_poll(&Self::poll_id(&params)?)?;
        if start && poll.questions.is_empty() {
            return Err(Refusal::new(code::BAD_REQUEST, "a poll needs a question before it starts"));
        }
        let (from, to) = if start { (polls::CREATED, polls::STARTED) } else { (polls::STARTED, polls::STOPPED) };
        let session = self.session.as_ref().map(|(id, _)| id.clone()).unwrap_or_default();
        let moved = self.poll_store()?.lock_unpoisoned().move_poll(&poll.id, &self.id, &session, from, to, peer_id);
        let moved = moved
            .map_err(internal)?
            .ok_or_else(|| Refusal::new(code::CONFLICT, format!("the poll is {}, not {from}", poll.state)))?;
        let method = if start { "on-poll-start" } else { "on-poll-stop" };
        self.push_all(method, &json!({ "polls": [moved.info_params()] }));
        let duration = moved.info.get("duration").and_then(Value::as_u64).unwrap_or(0);
        Ok(json!({ "poll_id": moved.id, "duration": duration }))
    }

    /// `poll-response {poll_id, responses: [{question, option | options | text | skipped,
    /// duration, update}]}`: answers `{poll_id, result: [{question, correct}]}` and tells
    /// everyone who may see the counts.
    pub(super) fn poll_response(&mut self, peer_id: &str, params: PollParams) -> Result<Value, Refusal> {
        let (role, _, _) = self.poll_permissions(peer_id)?;
        let poll = self.room_poll(&Self::poll_id(&params)?)?;
        if poll.state != polls::STARTED {
            return Err(Refusal::new(code::CONFLICT, format!("the poll is {}, not started", poll.state)));
        }
        if !poll.may_vote(&role) {
            return Err(Refusal::new(code::FORBIDDEN, format!("role '{role}' may not vote in this poll")));
        }
        let list = params
            .responses
            .as_ref()
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty() && l.len() <= check::MAX_QUESTIONS);
        let list = list.ok_or_else(|| Refusal::new(code::INVALID_PARAMS, "responses is a list of 1 to 50 answers"))?;
        let mut checked = Vec::new();
        for r in list {
            checked.push(check::check_response(&poll, r).map_err(|m| Refusal::new(code::BAD_REQUEST, m))?);
        }
        let peer = self.requester(peer_id)?;
        let (user_id, username) = (peer.user_id.clone(), peer.name.clone());
        let session = self.session.as_ref().map(|(id, _)| id.clone()).unwrap_or_default();
        let store = self.poll_store()?;
        let mut result = Vec::new();
        for ((question, body), raw) in checked.into_iter().zip(list) {
            let response = PollResponse {
                id: String::new(),
                poll_id: poll.id.clone(),
                session_id: session.clone(),
                peer_id: peer_id.to_owned(),
                user_id: user_id.clone(),
                username: username.clone(),
                question,
                body: body.clone(),
                created_at: 0,
            };
            let update = raw.get("update").and_then(Value::as_bool).unwrap_or(false);
            let once = poll.questions[question as usize - 1]["question"]["once"].as_bool().unwrap_or(false);
            let error = match store.lock_unpoisoned().answer_poll(&response, update, once).map_err(internal)? {
                Answered::Stored(_) => Value::Null,
                Answered::AlreadyAnswered => {
                    json!({ "code": code::CONFLICT, "message": "already answered", "description": "this question was answered and takes no update" })
                }
            };
            let correct = check::is_correct(&poll, question, &body).unwrap_or(false);
            result.push(json!({ "question": question, "correct": correct, "error": error }));
        }
        self.push_poll_stats(&poll)?;
        Ok(json!({ "poll_id": poll.id, "result": result }))
    }

    fn poll_results(&self, poll: &Poll) -> Result<Value, Refusal> {
        let responses = self.poll_store()?.lock_unpoisoned().poll_responses(&poll.id, None).map_err(internal)?;
        let voters = self.peers.values().filter(|p| p.joined && poll.may_vote(&p.role)).count();
        Ok(check::results(poll, &responses, voters))
    }

    fn push_poll_stats(&self, poll: &Poll) -> Result<(), Refusal> {
        let stats = crate::rpc::push("on-poll-stats", json!({ "polls": [self.poll_results(poll)?] }));
        for p in self.peers.values().filter(|p| p.joined) {
            let role = self.role(&p.role);
            let reads = role.is_some_and(|r| r.permissions.poll_read || r.permissions.poll_write);
            if reads || poll.may_see_responses(&p.role) {
                p.send(stats.clone());
            }
        }
        Ok(())
    }

    /// `poll-list {state?, count, start?}`: `{polls, last}`; drafts only with `pollWrite`.
    pub(super) fn poll_list(&self, peer_id: &str, params: PollParams) -> Result<Value, Refusal> {
        let (_, _, write) = self.poll_permissions(peer_id)?;
        let state = params.state.valid();
        if let Some(s) = &state
            && ![polls::CREATED, polls::STARTED, polls::STOPPED].contains(&s.as_str())
        {
            return Err(Refusal::new(code::BAD_REQUEST, "state is created, started or stopped"));
        }
        let count = params.count.valid().unwrap_or(50).clamp(1, 100) as usize;
        let list: Vec<Value> = self
            .room_polls(state.as_deref())?
            .iter()
            .filter(|p| write || p.state != polls::CREATED)
            .take(count)
            .map(Poll::info_params)
            .collect();
        Ok(json!({ "polls": list, "last": Value::Null }))
    }

    /// `poll-responses {poll_id, index, count, self}`: the caller's own, or everyone's.
    pub(super) fn poll_responses(&self, peer_id: &str, params: PollParams) -> Result<Value, Refusal> {
        let (poll, _, sees_all) = self.readable_poll(peer_id, &params)?;
        let own = params.own.valid().unwrap_or(false);
        if !own && !sees_all {
            return Err(Refusal::new(
                code::FORBIDDEN,
                "everyone's responses need 'pollRead' or a role the poll shows them to",
            ));
        }
        let of = own.then_some(peer_id);
        let all = self.poll_store()?.lock_unpoisoned().poll_responses(&poll.id, of).map_err(internal)?;
        let from = params.index.valid().unwrap_or(0) as usize;
        let count = params.count.valid().unwrap_or(50).clamp(1, 100) as usize;
        let page: Vec<Value> = all.iter().skip(from).take(count).map(PollResponse::sdk).collect();
        Ok(json!({ "poll_id": poll.id, "responses": page, "last": from + page.len() >= all.len() }))
    }

    pub(super) fn poll_result(&self, peer_id: &str, params: PollParams) -> Result<Value, Refusal> {
        let (poll, _, _) = self.readable_poll(peer_id, &params)?;
        self.poll_results(&poll)
    }

    /// `poll-leaderboard {poll_id, count, offset}`: a stopped quiz's ranking.
    pub(super) fn poll_leaderboard(&self, peer_id: &str, params: PollParams) -> Result<Value, Refusal> {
        let (poll, _, sees_all) = self.readable_poll(peer_id, &params)?;
        if !sees_all {
            return Err(Refusal::new(
                code::FORBIDDEN,
                "the leaderboard needs 'pollRead' or a role the poll shows responses to",
            ));
        }
        let responses = self.poll_store()?.lock_unpoisoned().poll_responses(&poll.id, None).map_err(internal)?;
        let offset = params.offset.valid().unwrap_or(0) as usize;
        let count = params.count.valid().unwrap_or(50).clamp(1, 100) as usize;
        Ok(check::leaderboard(&poll, &responses, offset, count))
    }
}

fn internal(e: store::StoreError) -> Refusal {
    Refusal::new(code::INTERNAL, format!("poll store: {e}"))
}

fn invalid(errors: Vec<store::template::FieldError>) -> Refusal {
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Refusal::new(code::BAD_REQUEST, format!("invalid poll: {}", list.join("; ")))
}
