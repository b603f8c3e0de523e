//! One room: its peers, their two peer connections (router transports), their published
//! tracks and their subscriptions, and the 100ms client protocol flows that change them.
//!
//! Each room is an actor (a tokio task owning a [`Room`]): every message about the room —
//! a peer's socket attaching or closing, a JSON-RPC message, a router event — is handled in
//! order, one at a time, so a join, a publish and a leave never interleave. Router calls are
//! awaited inside the handler for the same reason.
//!
//! # Flows (`../shared/100MS-PROTOCOL.md`)
//!
//! - **Attach** (a WebSocket opened): push `on-policy-change` unasked (the SDK waits for it
//!   before `join`). An attach for a peer id we know is a reconnect: the new socket replaces the
//!   old one, and the peer gets a fresh `peer-list`.
//! - **join**: a publish transport, the answer to the publish offer, then `peer-list`, a
//!   subscribe transport with the first subscribe `offer` (data channel plus every track the
//!   role subscribes to), and `on-peer-join` to the others.
//! - **offer** (publish renegotiation): answer it; diff its `tracks` against what the peer
//!   published; produce new tracks, close removed ones; tell the others (`on-track-add`,
//!   `on-track-remove`) and renegotiate their subscribe connections.
//! - **answer** (to our subscribe offer): connect the subscribe transport the first time;
//!   the next subscribe offer waits for it.
//! - **track-update**, **peer-update**, **broadcast**, **ping**, **leave**.
//! - A socket that closes without `leave` keeps the peer for [`RECONNECT_GRACE`] (the SDK
//!   reconnects within 60 s); then the peer is removed as if it had left.
//! - **Permissioned requests** (the role's `permissions`): `role-change-request` (forced:
//!   applied at once; otherwise `on-role-change-request` with a one-time token, applied when
//!   the target answers `role-change` with it), `track-update-request` and
//!   `change-track-mute-state-request` (`mute` / `unmute`), `peer-leave-request`
//!   (`removeOthers`), `end-room` (`endRoom`). A refusal is error 403 and changes nothing.
//! - **A role change**: `on-policy-change` (new name) to the peer, which makes its SDK
//!   republish for the new role; `on-peer-update` to everyone; tracks of kinds the new role may
//!   not publish are closed (`on-track-remove`); every subscribe connection is brought in line
//!   with `subscribeToRoles`.
//! - **Recording and streaming** (`jobs.rs`): `rtmp-start`, `rtmp-stop`, `hls-start`,
//!   `hls-stop` create or stop jobs in the store for control to run; `hls-timed-metadata`
//!   hands the running HLS job cues; control's `job_state` becomes `on-record-update`,
//!   `on-rtmp-update`, `on-hls-update`; `peer-list` and `room-state` carry the live jobs.
//! - **Groups** (`groups.rs`): `group-join`, `group-leave` (a raised hand is `_handraise`),
//!   `group-add`, `group-remove`; `on-peer-update` to everyone, the peer included.
//! - **Who is here** (`peer_queries.rs`, `room_status.rs`): `get-peer`, `find-peer`,
//!   `peer-iter-next`, `peer-name-search`; `room-info` on join, `session-info` on every
//!   head-count change, `room-state` to previewing peers.
//! - **Polls and quizzes** (`polls.rs`): the `poll-*` methods over `store::poll`,
//!   `on-poll-start`, `on-poll-stop`, `on-poll-stats`.
//! - **Connection quality** (`connection_quality.rs`): every 3 s, each peer's downlink scored
//!   from the router's link stats, `on-connection-quality-update` to everyone.
//! - **Capacity** (`capacity.rs`): the room's `size` and each role's `maxPeerCount` on join
//!   and role change, refusals reported as `JoinFailed` / `RoleChangeFailed` events.
//! - **The session store** (`session_store.rs`): `set-metadata`, `get-metadata`,
//!   `listen-metadata-change`; `on-metadata-change` to the peers observing a key; emptied
//!   when the session ends.
//! - **Admin** ([`AdminOp`], from the control daemon's socket): the active room, update a
//!   peer, a server message, remove peers, end the room, a job's state.
//! - **The session cap**: a session that has lasted [`RoomEnv::session_cap`] (read once, when the session starts) is ended as by
//!   `end-room`.
//! - Every change is reported to the environment's event sink (`events.rs`), awaited before the next
//!   message.
//!
//! # Where things are
//!
//! This file holds the actor (its loop and dispatch) and the room's state; the flows live in
//! the child modules: `rpc.rs` (client requests, decoded into typed params), `negotiate.rs`
//! (offers and answers), `permissions.rs` (role checks and role changes), `admin.rs` (the
//! control daemon's ops and removals), `media_events.rs` (router events), `snapshot.rs`
//! (surviving a restart), `recording.rs` (taps for the recorder), `jobs.rs` (recording and
//! streaming as the SDK sees them). A room reaches the world
//! only through its [`RoomEnv`]: the router ([`crate::router_api::RouterApi`]), the event sink,
//! the store and a [`HubHandle`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

mod admin;
mod capacity;
mod connection_quality;
mod env;
mod groups;
mod http_peers;
mod jobs;
mod media_events;
mod negotiate;
mod peer;
mod peer_queries;
mod permissions;
mod polls;
mod recording;
mod room_status;
mod rpc;
mod session_store;
mod snapshot;
#[cfg(test)]
mod tests;

use schema::api::Event;
use store::{Role, Template};

pub use self::admin::{AdminError, AdminOp};
pub use self::env::{HubHandle, RoomEnv};
pub use self::http_peers::{HttpOp, HttpPeerKind, HttpReply};
pub use self::jobs::JobState;
use self::peer::{Peer, Via};
use crate::events::{EventRoom, LeaveReason, RoomEvent};
use crate::rpc::{Incoming, code};

/// How long a peer whose socket closed (without `leave`) keeps its place: the SDK retries for
/// 60 s.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(60);

/// The label of the data channel the SDK expects on its subscribe connection.
pub const DATA_CHANNEL_LABEL: &str = "ion-sfu";

/// Longest peer name and metadata accepted.
const MAX_NAME: usize = 256;
const MAX_DATA: usize = 16 * 1024;

/// What a room actor receives.
#[derive(Debug)]
pub enum RoomMsg {
    /// A WebSocket authenticated for `peer_id` in this room.
    Attach { peer_id: String, conn: u64, user_id: String, role: String, out: Outbox },
    /// A JSON-RPC message on that socket, and when it was read off the socket.
    Rpc { peer_id: String, conn: u64, msg: Incoming, received: Instant },
    /// The socket closed.
    Detach { peer_id: String, conn: u64 },
    /// A router event about one of this room's transports.
    Router(Event),
    /// An operation of the control daemon (`admin.rs`), answered on `reply`.
    Admin { op: AdminOp, reply: oneshot::Sender<Result<Value, AdminError>> },
    /// A WHIP or WHEP request (`http_peers.rs`), answered on `reply`.
    Http { op: HttpOp, reply: oneshot::Sender<Result<HttpReply, Refusal>> },
}

/// What goes out on a peer's socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    Text(String),
    /// Close the socket with this code and reason.
    Close(u16, String),
}

pub type Outbox = mpsc::UnboundedSender<Outbound>;

/// A JSON-RPC failure: code and message for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: i64,
    pub message: String,
}

impl Refusal {
    fn new(code: i64, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }
}

impl From<crate::router_link::CallError> for Refusal {
    fn from(e: crate::router_link::CallError) -> Refusal {
        // The router refusing or not answering is the server's fault, not the client's; a
        // 5xx makes the SDK retry, which is right for a transient failure.
        Refusal::new(code::INTERNAL, e.to_string())
    }
}

/// The state of one room, owned by its actor task.
#[derive(Debug)]
pub struct Room {
    id: String,
    name: String,
    template: Template,
    env: RoomEnv,
    /// The router shard all of the room's transports live on (a consumer must be on its
    /// producer's shard).
    shard: Option<u8>,
    session: Option<(String, u64)>,
    /// The open session's cap, read from the store once when it starts (or, for a session a
    /// previous process started, at its first check), not on every tick.
    session_cap: Option<Duration>,
    /// When the open session ends if no peer joins: set when the last peer left while
    /// compositor jobs with an `autoStopTimeout` run (Unix ms; see [`Room::job_linger`]).
    linger_until: Option<u64>,
    peers: BTreeMap<String, Peer>,
    /// The last snapshot written, to skip writing an unchanged one, and the buffer the next
    /// one is serialized into (the two swap: a room of 200 peers is a ~1 MB snapshot, and
    /// growing a fresh buffer each time had the kernel zeroing pages).
    saved: Vec<u8>,
    spare: Vec<u8>,
    /// Role changes asked of a peer and not yet accepted, by their one-time token.
    role_requests: HashMap<String, RoleRequest>,
    /// The session's key/value store (`set-metadata` and the like).
    session_store: session_store::SessionStore,
    /// Events not yet handed to the sink (they are, before the next message).
    pending_events: Vec<RoomEvent>,
    /// What must happen after the current request's response is sent (a removal of the
    /// requester itself must not swallow its response).
    deferred: Vec<Deferred>,
    /// Set while the room is being ended: removals do not end the session one by one.
    ending: bool,
    /// The speakers last sent in `active-speakers`, loudest first: (peer, audio track).
    speakers: Vec<(String, String)>,
    /// When `active-speakers` was last pushed: a list that still holds is pushed again after
    /// [`SPEAKERS_REFRESH`], as 100ms does periodically, because the SDK drops an entry whose
    /// peer or track it does not know yet (a peer that just joined, a track not yet
    /// subscribed), and a list pushed only on change would leave it without a speaker.
    speakers_pushed_at: Option<Instant>,
    /// When previewing peers were last sent `room-state` (`room_status.rs`).
    room_state_at: Option<Instant>,
    /// When connection quality was last pushed (`connection_quality.rs`).
    quality_at: Option<Instant>,
    /// The track recording running, if any.
    /// The jobs tapping this room's tracks (track recording, composite jobs).
    recordings: Vec<recording::Active>,
}

/// Bandwidth allocation priorities of producers (higher is served first).
const PRIORITY_SCREEN: u8 = 3;
const PRIORITY_SPEAKER: u8 = 2;
const PRIORITY_DEFAULT: u8 = 1;

/// A role change waiting for its target to accept it.
#[derive(Debug, Clone)]
struct RoleRequest {
    target: String,
    role: String,
    requested_by: String,
}

/// Work done after a response went out.
#[derive(Debug, Clone)]
enum Deferred {
    Kick { target: String, by: String, reason: String },
    EndRoom { by: String, reason: String, lock: bool },
}

/// At most this many unanswered role-change requests per room (the oldest are not tracked:
/// a map full of them refuses new requests instead).
const MAX_ROLE_REQUESTS: usize = 1024;

fn system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Room {
    pub fn new(id: String, name: String, template: Template, env: RoomEnv) -> Room {
        let mut room = Room {
            id,
            name,
            template,
            env,
            shard: None,
            session: None,
            session_cap: None,
            linger_until: None,
            peers: BTreeMap::new(),
            saved: Vec::new(),
            spare: Vec::new(),
            role_requests: HashMap::new(),
            session_store: session_store::SessionStore::default(),
            pending_events: Vec::new(),
            deferred: Vec::new(),
            ending: false,
            speakers: Vec::new(),
            speakers_pushed_at: None,
            room_state_at: None,
            quality_at: None,
            recordings: Vec::new(),
        };
        room.restore();
        room
    }

    /// Runs the actor until every handle is dropped.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<RoomMsg>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When the snapshot is next written, if a message changed the room since the last one.
        let mut save_at: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => {
                        let quiet = snapshot::changes_no_snapshot(&msg);
                        self.handle(msg).await;
                        self.flush_events().await;
                        if !quiet && save_at.is_none() {
                            save_at = Some(tokio::time::Instant::now() + snapshot::SNAPSHOT_COALESCE);
                        }
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(save_at.unwrap_or_else(tokio::time::Instant::now)), if save_at.is_some() => {
                    save_at = None;
                    self.save();
                }
                _ = tick.tick() => {
                    self.evict_absent().await;
                    self.check_session_cap().await;
                    self.check_linger(util::unix_ms());
                    self.refresh_previews(Instant::now());
                    self.refresh_connection_quality(Instant::now()).await;
                    self.flush_events().await;
                    save_at = None;
                    self.save();
                }
            }
        }
        for id in self.peers.keys().cloned().collect::<Vec<_>>() {
            self.remove_peer(&id, LeaveReason::ServerRemovedPeer, "server shutting down").await;
        }
        self.flush_events().await;
    }

    /// Hands the pending events to the sink, in order, each awaited.
    async fn flush_events(&mut self) {
        for event in std::mem::take(&mut self.pending_events) {
            let name = event.name();
            if let Err(e) = self.env.events.record(event).await {
                warn!(room = %self.id, event = name, error = %e, "event sink failed; event lost");
            }
        }
    }

    fn emit(&mut self, event: RoomEvent) {
        self.pending_events.push(event);
    }

    fn event_room(&self) -> EventRoom {
        EventRoom {
            room_id: self.id.clone(),
            room_name: self.name.clone(),
            template_id: self.template.id.clone(),
            session_id: self.session.as_ref().map(|(id, _)| id.clone()).unwrap_or_default(),
        }
    }

    /// Ends the session, if one is open, with an event.
    fn end_session(&mut self, reason: &str, ended_by: Option<String>, lock: bool) {
        let room = self.event_room();
        self.linger_until = None;
        if let Some((session, started)) = self.session.take() {
            self.session_cap = None;
            info!(room = %self.id, %session, reason, "session ended");
            self.role_requests.clear();
            self.session_store.clear();
            self.emit(RoomEvent::SessionEnded {
                room,
                started_at: system_time(started),
                ended_at: SystemTime::now(),
                reason: reason.to_owned(),
                ended_by,
                lock,
            });
        }
    }

    /// The room has no joined peer left: the session ends, unless running compositor jobs
    /// ask for it to wait (`autoStopTimeout`, as 100ms's beam waits in an empty room).
    /// `linger` is [`Room::job_linger`], read before the leave was told.
    fn last_peer_left(&mut self, linger: Option<Duration>, now_ms: u64) {
        match linger {
            Some(wait) => {
                // Saturating: a template may say any number (the session cap ends the wait anyway).
                self.linger_until = Some(now_ms.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)));
                info!(room = %self.id, wait_secs = wait.as_secs(), "last peer left; the session stays open for its running jobs (autoStopTimeout)");
            }
            None => self.end_session(crate::events::LAST_PEER_LEFT, None, false),
        }
    }

    /// Ends a session kept open for its jobs once the wait is over with no peer back, or at
    /// once when no job is left to wait for (stopped meanwhile).
    fn check_linger(&mut self, now_ms: u64) {
        let Some(until) = self.linger_until else { return };
        if self.peers.values().any(|p| p.joined) {
            self.linger_until = None;
            return;
        }
        if now_ms >= until || self.job_linger().is_none() {
            info!(room = %self.id, "no peer came back while the jobs waited (autoStopTimeout); ending the session");
            self.end_session(crate::events::LAST_PEER_LEFT, None, false);
        }
    }

    /// Ends the session once it has lasted the cap.
    async fn check_session_cap(&mut self) {
        let Some((_, started)) = self.session else { return };
        let cap = match self.session_cap {
            Some(cap) => cap,
            None => *self.session_cap.insert(self.env.session_cap(&self.id)),
        };
        if util::unix_ms().saturating_sub(started) >= cap.as_millis() as u64 {
            info!(room = %self.id, cap_secs = cap.as_secs(), "session reached its maximum duration; ending the room");
            self.end_room(None, "the session reached its maximum duration", false, crate::events::MAX_DURATION_REACHED)
                .await;
        }
    }

    async fn handle(&mut self, msg: RoomMsg) {
        match msg {
            RoomMsg::Attach { peer_id, conn, user_id, role, out } => {
                self.attach(peer_id, conn, user_id, role, out).await
            }
            RoomMsg::Rpc { peer_id, conn, msg, received } => {
                if self.peers.get(&peer_id).is_some_and(|p| p.conn == conn) {
                    self.rpc(&peer_id, msg, received).await;
                }
            }
            RoomMsg::Detach { peer_id, conn } => self.detach(&peer_id, conn).await,
            RoomMsg::Router(event) => self.router_event(event).await,
            RoomMsg::Admin { op, reply } => {
                let result = self.admin(op).await;
                let _ = reply.send(result);
            }
            RoomMsg::Http { op, reply } => {
                let result = self.http_op(op).await;
                let _ = reply.send(result);
            }
        }
    }

    fn role(&self, role: &str) -> Option<&Role> {
        self.template.roles.get(role)
    }

    /// The RoomState of `peer-list` and `room-state`: the SDK sets its recording and streaming
    /// states from it, so a peer that joins while a job runs sees it.
    fn room_state(&self) -> Value {
        let mut room = json!({ "name": self.name, "room_id": self.id });
        if let Some((id, started)) = &self.session {
            room["session_id"] = json!(id);
            room["started_at"] = json!(started);
        }
        let (recording, streaming) = self.job_room_state();
        room["recording"] = recording;
        room["streaming"] = streaming;
        room
    }

    fn policy_params(&self, role: &str) -> Value {
        json!({
            "name": role,
            "known_roles": self.template.roles,
            "template_id": self.template.id,
        })
    }

    async fn attach(&mut self, peer_id: String, conn: u64, user_id: String, role: String, out: Outbox) {
        if self.role(&role).is_none() {
            let msg = format!("role '{role}' is not in the room's template");
            let _ = out
                .send(Outbound::Text(crate::rpc::push("on-error", json!({ "code": code::FORBIDDEN, "message": msg }))));
            let _ = out.send(Outbound::Close(4003, msg));
            return;
        }
        // A reconnecting peer keeps the role it has now (a role change outlives its token).
        let current = self.peers.get(&peer_id).map_or(role.as_str(), |p| p.role.as_str());
        let policy = self.policy_params(current);
        let peer_list = self.peer_list_for(&peer_id);
        match self.peers.get_mut(&peer_id) {
            Some(peer) => {
                // A reconnect (or a second tab with the same peer id): the newest socket wins.
                if peer.user_id != user_id || !peer.via.reconnects() {
                    let msg = "peer id is in use by another user";
                    let _ = out.send(Outbound::Text(crate::rpc::push(
                        "on-error",
                        json!({ "code": code::CONFLICT, "message": msg }),
                    )));
                    let _ = out.send(Outbound::Close(4009, msg.into()));
                    return;
                }
                if let Some(old) = peer.out.take() {
                    let _ = old.send(Outbound::Close(4000, "replaced by a new connection of the same peer".into()));
                }
                info!(room = %self.id, peer = %peer_id, "peer reconnected");
                peer.conn = conn;
                peer.out = Some(out);
                peer.away_since = None;
                peer.push("on-policy-change", policy);
                if peer.joined {
                    peer.push("peer-list", peer_list);
                    // An offer whose answer was lost with the old socket is sent again.
                    let resend =
                        peer.subscribe.as_ref().filter(|s| s.awaiting_answer).and_then(|s| s.last_offer.as_ref());
                    if let Some(offer) = resend {
                        peer.push("offer", json!({ "type": "offer", "sdp": offer.sdp }));
                    } else if peer.subscribe.as_ref().is_some_and(|s| s.dirty) {
                        self.renegotiate(&peer_id).await;
                    }
                }
            }
            None => {
                debug!(room = %self.id, peer = %peer_id, %role, "peer attached");
                let peer = Peer {
                    id: peer_id.clone(),
                    user_id,
                    role,
                    name: String::new(),
                    data: String::new(),
                    joined_at_ms: 0,
                    joined: false,
                    video_on_request: false,
                    conn,
                    out: Some(out),
                    away_since: None,
                    publish: None,
                    subscribe: None,
                    via: Via::Sdk,
                    observed_keys: Default::default(),
                    groups: Default::default(),
                };
                peer.push("on-policy-change", policy);
                // What a previewing client shows before it joins: who is in the room.
                peer.push("room-state", self.room_state_for(&peer.role));
                self.peers.insert(peer_id, peer);
            }
        }
    }

    async fn detach(&mut self, peer_id: &str, conn: u64) {
        let Some(peer) = self.peers.get_mut(peer_id) else { return };
        if peer.conn != conn {
            return;
        }
        peer.out = None;
        if peer.joined {
            info!(room = %self.id, peer = %peer_id, "socket closed without leave; keeping the peer for reconnection");
            peer.away_since = Some(Instant::now());
        } else {
            self.peers.remove(peer_id);
        }
    }

    async fn evict_absent(&mut self) {
        let now = Instant::now();
        let gone: Vec<String> = self
            .peers
            .values()
            .filter(|p| p.away_since.is_some_and(|t| now.duration_since(t) >= RECONNECT_GRACE))
            .map(|p| p.id.clone())
            .collect();
        for id in gone {
            self.remove_peer(&id, LeaveReason::WebsocketClosed, "did not reconnect within 60 s").await;
        }
    }

    fn peer_list_for(&self, peer_id: &str) -> Value {
        let peers: serde_json::Map<String, Value> = self
            .peers
            .values()
            .filter(|p| p.joined && p.id != peer_id)
            .map(|p| (p.id.clone(), p.notification()))
            .collect();
        json!({ "peers": peers, "room": self.room_state() })
    }

    fn push_others(&self, peer_id: &str, method: &str, params: &Value) {
        let text = crate::rpc::push(method, params.clone());
        for p in self.peers.values().filter(|p| p.joined && p.id != peer_id) {
            p.send(text.clone());
        }
    }

    fn push_all(&self, method: &str, params: &Value) {
        let text = crate::rpc::push(method, params.clone());
        for p in self.peers.values().filter(|p| p.joined) {
            p.send(text.clone());
        }
    }
}

/// How often an unchanged, non-empty `active-speakers` list is pushed again.
const SPEAKERS_REFRESH: Duration = Duration::from_secs(1);
