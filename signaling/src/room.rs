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
//! - **Admin** ([`AdminOp`], from the control daemon's socket): the active room, update a
//!   peer, a server message, remove peers, end the room.
//! - **The session cap**: a session that has lasted [`Hub::session_cap`] is ended as by
//!   `end-room`.
//! - Every change is reported to the hub's event sink (`events.rs`), awaited before the next
//!   message.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, trace, warn};

mod recording;

use router_engine::codec::Codec;
use schema::layers as simulcast;
use router_engine::{ConsumeParams, ConsumerId, ConsumerInfo, MediaKind, ProducerId, TransportId, TransportInfo};
use schema::api::{AudioLevel, CloseReason, Event};
use store::role::Permissions;
use store::{Role, Template, TrackKind};

use crate::events::{EventPeer, EventRoom, EventTrack, LeaveReason, RoomEvent};
use crate::hub::Hub;
use crate::protocol::{PeerInfo, TrackState, now_ms, random_id};
use crate::rpc::{self, Incoming, code};
use crate::sdp::{
    PublishPolicy, RejectReason, SubscribeOffer, SubscribeOptions, SubscribeTrack, answer_publish_offer, assign_mids,
    read_subscribe_answer, subscribe_extensions, subscribe_offer,
};

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
}

/// What the control daemon may do to a room (the admin socket's ops, `admin.rs`).
#[derive(Debug, Clone, PartialEq)]
pub enum AdminOp {
    /// The room's session and peers.
    ActiveRoom,
    /// Rename, change the metadata of, or force a role change on a peer.
    UpdatePeer { peer_id: String, name: Option<String>, role: Option<String>, metadata: Option<String> },
    /// A message from the server (`on-broadcast` with no sender): to everyone, one peer, or a role.
    SendMessage { message: String, kind: String, peer_id: Option<String>, role: Option<String> },
    /// Removes one peer, or every peer of a role ("peer kicked").
    RemovePeers { peer_id: Option<String>, role: Option<String>, reason: String },
    /// Ends the session; `lock` also disables the room.
    EndRoom { reason: String, lock: bool },
    /// Taps every track (and every track published later) for a recording (`room/recording.rs`).
    StartRecording { recording_id: String, tap: u32 },
    /// Ends the taps of a recording (`None`: whichever runs).
    StopRecording { recording_id: Option<String> },
    /// The recorder waits for a keyframe of a tapped track: the router asks its publisher.
    RequestKeyframe { recording_id: String, track_id: String },
}

/// An admin operation refused: an HTTP-like status (400, 404, 409) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    pub status: u16,
    pub message: String,
}

impl AdminError {
    pub fn new(status: u16, message: impl Into<String>) -> AdminError {
        AdminError { status, message: message.into() }
    }
}

impl From<Refusal> for AdminError {
    fn from(r: Refusal) -> AdminError {
        let status = match r.code {
            400..=499 => r.code as u16,
            _ => 400,
        };
        AdminError { status, message: r.message }
    }
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

/// A track a peer publishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Published {
    state: TrackState,
    producer: ProducerId,
    kind: MediaKind,
    rtx_payload_type: Option<u8>,
    fmtp: Option<String>,
    /// When it was first published (ms since the epoch).
    #[serde(default)]
    started_at_ms: u64,
}

impl Published {
    /// The kind `publishParams.allowed` names for this track.
    fn needed_kind(&self) -> TrackKind {
        match (self.kind, self.state.is_screen()) {
            (MediaKind::Audio, _) => TrackKind::Audio,
            (MediaKind::Video, true) => TrackKind::Screen,
            (MediaKind::Video, false) => TrackKind::Video,
        }
    }

    fn event(&self) -> EventTrack {
        EventTrack {
            track_id: self.state.track_id.clone(),
            stream_id: self.state.stream_id.clone(),
            kind: self.state.kind.clone(),
            source: self.state.source.clone(),
            mute: self.state.mute,
            started_at: system_time(self.started_at_ms),
        }
    }

    fn admin(&self) -> Value {
        json!({
            "id": self.state.track_id,
            "stream_id": self.state.stream_id,
            "mute": self.state.mute,
            "type": self.state.kind,
            "source": self.state.source,
            "started_at_ms": self.started_at_ms,
            "description": self.state.description,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct PublishSide {
    transport: TransportInfo,
    ice_ufrag: Option<String>,
    tracks: BTreeMap<String, Published>,
}

/// One track a peer receives.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Subscribed {
    consumer: ConsumerInfo,
    mid: String,
    stream_id: String,
    fmtp: Option<String>,
    /// Paused at the subscriber's request (or until it asks, for video under
    /// `disableVidAutoSub`).
    paused: bool,
    /// The subscriber has asked for this video's layer (`prefer-video-track-state`): only then
    /// does it get `on-track-layer-update`s for it (see `layers_changed`).
    #[serde(default)]
    asked: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct SubscribeSide {
    transport: TransportInfo,
    connected: bool,
    last_offer: Option<SubscribeOffer>,
    /// An offer is out and its answer has not come back: the next one waits.
    awaiting_answer: bool,
    /// Something changed while an offer was out (or the socket was away).
    dirty: bool,
    tracks: BTreeMap<String, Subscribed>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Peer {
    id: String,
    user_id: String,
    role: String,
    name: String,
    data: String,
    joined_at_ms: u64,
    joined: bool,
    /// Under `disableVidAutoSub` (the SDK's default) video waits for a layer request.
    video_on_request: bool,
    #[serde(skip)]
    conn: u64,
    #[serde(skip)]
    out: Option<Outbox>,
    #[serde(skip)]
    away_since: Option<Instant>,
    publish: Option<PublishSide>,
    subscribe: Option<SubscribeSide>,
}

impl Peer {
    fn info(&self) -> PeerInfo<'_> {
        PeerInfo {
            peer_id: &self.id,
            role: &self.role,
            name: &self.name,
            data: &self.data,
            user_id: &self.user_id,
            joined_at_ms: self.joined_at_ms,
        }
    }

    fn tracks(&self) -> impl Iterator<Item = &TrackState> {
        self.publish.iter().flat_map(|p| p.tracks.values().map(|t| &t.state))
    }

    fn notification(&self) -> Value {
        self.info().notification(self.tracks())
    }

    fn send(&self, text: String) {
        if let Some(out) = &self.out {
            let _ = out.send(Outbound::Text(text));
        }
    }

    fn push(&self, method: &str, params: Value) {
        self.send(rpc::push(method, params));
    }

    fn event(&self) -> EventPeer {
        EventPeer {
            peer_id: self.id.clone(),
            user_id: self.user_id.clone(),
            name: self.name.clone(),
            metadata: self.data.clone(),
            role: self.role.clone(),
            joined_at: system_time(self.joined_at_ms),
        }
    }

    /// The peer as the admin socket shows it.
    fn admin(&self) -> Value {
        let tracks: serde_json::Map<String, Value> =
            self.publish.iter().flat_map(|p| p.tracks.iter().map(|(id, t)| (id.clone(), t.admin()))).collect();
        json!({
            "id": self.id,
            "name": self.name,
            "user_id": self.user_id,
            "metadata": self.data,
            "role": self.role,
            "joined_at_ms": self.joined_at_ms,
            "tracks": tracks,
        })
    }

    /// Pushes `on-peer-leave-request` and closes the socket: the SDK leaves on it.
    fn send_off(&mut self, by: Option<&str>, reason: &str, room_end: bool) {
        let mut note = json!({ "reason": reason, "room_end": room_end });
        if let Some(by) = by {
            note["requested_by"] = json!(by);
        }
        if self.joined {
            self.push("on-peer-leave-request", note);
        }
        if let Some(out) = self.out.take() {
            let why = if room_end { "the room was ended" } else { "removed from the room" };
            let _ = out.send(Outbound::Close(1000, why.into()));
        }
    }

    fn owns(&self, transport: TransportId) -> bool {
        self.publish.as_ref().is_some_and(|p| p.transport.id == transport)
            || self.subscribe.as_ref().is_some_and(|s| s.transport.id == transport)
    }
}

/// The state of one room, owned by its actor task.
#[derive(Debug)]
pub struct Room {
    id: String,
    name: String,
    template: Template,
    hub: Arc<Hub>,
    /// The router shard all of the room's transports live on (a consumer must be on its
    /// producer's shard).
    shard: Option<u8>,
    session: Option<(String, u64)>,
    peers: BTreeMap<String, Peer>,
    /// The last snapshot written, to skip writing an unchanged one, and the buffer the next
    /// one is serialized into (the two swap: a room of 200 peers is a ~1 MB snapshot, and
    /// growing a fresh buffer each time had the kernel zeroing pages).
    saved: Vec<u8>,
    spare: Vec<u8>,
    /// Role changes asked of a peer and not yet accepted, by their one-time token.
    role_requests: HashMap<String, RoleRequest>,
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
    /// The track recording running, if any.
    recording: Option<recording::Active>,
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

/// What survives a restart of signaling: the router keeps the transports and keeps
/// forwarding; this lets a new signaling process pick the peers up again when their SDKs
/// reconnect (they re-offer on the same publish connection, without `join`).
#[derive(Debug, Deserialize)]
struct Snapshot {
    shard: Option<u8>,
    session: Option<(String, u64)>,
    peers: BTreeMap<String, Peer>,
    /// Absent in snapshots written before recordings were kept.
    #[serde(default)]
    recording: Option<recording::Active>,
}

/// [`Snapshot`] borrowed from the room, for writing: serialized straight from its state, not
/// through a `serde_json::Value` copy of every peer (building and dropping that tree was the
/// largest part of signaling's CPU in a join storm of 200 peers).
#[derive(Serialize)]
struct SnapshotRef<'a> {
    shard: Option<u8>,
    session: &'a Option<(String, u64)>,
    peers: &'a BTreeMap<String, Peer>,
    recording: &'a Option<recording::Active>,
}

impl Room {
    pub fn new(id: String, name: String, template: Template, hub: Arc<Hub>) -> Room {
        let mut room = Room {
            id,
            name,
            template,
            hub,
            shard: None,
            session: None,
            peers: BTreeMap::new(),
            saved: Vec::new(),
            spare: Vec::new(),
            role_requests: HashMap::new(),
            pending_events: Vec::new(),
            deferred: Vec::new(),
            ending: false,
            speakers: Vec::new(),
            speakers_pushed_at: None,
            recording: None,
        };
        room.restore();
        room
    }

    fn snapshot_path(&self) -> Option<std::path::PathBuf> {
        self.hub.state_dir.as_ref().map(|d| d.join(format!("{}.json", self.id)))
    }

    /// Picks up the peers a previous signaling process left: they count as away (their
    /// sockets died with it) and get the usual 60 s to reconnect.
    fn restore(&mut self) {
        let Some(path) = self.snapshot_path() else { return };
        let Ok(text) = std::fs::read_to_string(&path) else { return };
        let snapshot: Snapshot = match serde_json::from_str(&text) {
            Ok(s) => s,
            Err(e) => {
                warn!(room = %self.id, path = %path.display(), error = %e, "unreadable room snapshot ignored");
                return;
            }
        };
        self.shard = snapshot.shard;
        self.session = snapshot.session;
        self.peers = snapshot.peers;
        self.recording = snapshot.recording;
        let now = Instant::now();
        for peer in self.peers.values_mut() {
            peer.away_since = Some(now);
            for t in peer.publish.iter().map(|p| p.transport.id).chain(peer.subscribe.iter().map(|s| s.transport.id)) {
                self.hub.register_transport(t, &self.id);
            }
        }
        self.saved = text.into_bytes();
        info!(room = %self.id, peers = self.peers.len(), "room restored from the previous signaling process; waiting for its peers to reconnect");
    }

    /// Writes the room's snapshot when it changed (atomically: a crash mid-write leaves the
    /// previous one), or removes it when the room is empty.
    fn save(&mut self) {
        let Some(path) = self.snapshot_path() else { return };
        if self.peers.is_empty() {
            if !self.saved.is_empty() {
                let _ = std::fs::remove_file(&path);
                self.saved.clear();
            }
            return;
        }
        let mut text = std::mem::take(&mut self.spare);
        text.clear();
        let snapshot =
            SnapshotRef { shard: self.shard, session: &self.session, peers: &self.peers, recording: &self.recording };
        let written = match serde_json::to_writer(&mut text, &snapshot) {
            Err(e) => {
                warn!(room = %self.id, error = %e, "room snapshot not serialized");
                false
            }
            Ok(()) if text == self.saved => false,
            Ok(()) => {
                let tmp = path.with_extension("json.tmp");
                let result = std::fs::write(&tmp, &text).and_then(|_| std::fs::rename(&tmp, &path));
                if let Err(e) = &result {
                    warn!(room = %self.id, path = %path.display(), error = %e, "room snapshot not written");
                }
                result.is_ok()
            }
        };
        if written {
            std::mem::swap(&mut self.saved, &mut text);
        }
        self.spare = text;
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
                        let quiet = changes_no_snapshot(&msg);
                        self.handle(msg).await;
                        self.flush_events().await;
                        if !quiet && save_at.is_none() {
                            save_at = Some(tokio::time::Instant::now() + SNAPSHOT_COALESCE);
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
            if let Err(e) = self.hub.events.record(event).await {
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
        if let Some((session, started)) = self.session.take() {
            info!(room = %self.id, %session, reason, "session ended");
            self.role_requests.clear();
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

    /// Ends the session once it has lasted the cap.
    async fn check_session_cap(&mut self) {
        let Some((_, started)) = &self.session else { return };
        let cap = self.hub.session_cap(&self.id);
        if now_ms().saturating_sub(*started) >= cap.as_millis() as u64 {
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
        }
    }

    fn role(&self, role: &str) -> Option<&Role> {
        self.template.roles.get(role)
    }

    fn room_state(&self) -> Value {
        let mut room = json!({ "name": self.name, "room_id": self.id });
        if let Some((id, started)) = &self.session {
            room["session_id"] = json!(id);
            room["started_at"] = json!(started);
        }
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
            let _ = out.send(Outbound::Text(rpc::push("on-error", json!({ "code": code::FORBIDDEN, "message": msg }))));
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
                if peer.user_id != user_id {
                    let msg = "peer id is in use by another user";
                    let _ = out
                        .send(Outbound::Text(rpc::push("on-error", json!({ "code": code::CONFLICT, "message": msg }))));
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
                };
                peer.push("on-policy-change", policy);
                // What a previewing client shows before it joins: who is in the room.
                let joined = self.peers.values().filter(|p| p.joined).count();
                peer.push("room-state", json!({ "peer_count": joined, "room": self.room_state() }));
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

    async fn rpc(&mut self, peer_id: &str, msg: Incoming, received: Instant) {
        match msg {
            Incoming::Request { id, method, params } => {
                let result = self.request(peer_id, &method, params).await;
                let Some(peer) = self.peers.get(peer_id) else { return };
                match result {
                    Ok(value) => peer.send(rpc::response(&id, value)),
                    Err(refusal) => {
                        info!(room = %self.id, peer = %peer_id, %method, code = refusal.code, message = %refusal.message, "request refused");
                        peer.send(rpc::error_response(&id, refusal.code, &refusal.message));
                    }
                }
                if method == "join" {
                    self.hub.join_latency.lock().unwrap_or_else(|p| p.into_inner()).record(received.elapsed());
                    if self.peers.get(peer_id).is_some_and(|p| p.joined) {
                        self.after_join(peer_id).await;
                    }
                }
                for d in std::mem::take(&mut self.deferred) {
                    match d {
                        Deferred::Kick { target, by, reason } => self.kick(&target, Some(&by), &reason).await,
                        Deferred::EndRoom { by, reason, lock } => {
                            let ended = if reason.is_empty() { "room ended".to_owned() } else { reason.clone() };
                            self.end_room(Some(&by), &reason, lock, &ended).await
                        }
                    }
                }
            }
            Incoming::Notify { method, params } => self.notify(peer_id, &method, params).await,
            Incoming::Response { .. } => {}
        }
    }

    async fn request(&mut self, peer_id: &str, method: &str, params: Value) -> Result<Value, Refusal> {
        match method {
            "ping" => Ok(json!({ "timestamp": now_ms() })),
            "join" => self.join(peer_id, params).await,
            "offer" => self.publish_offer(peer_id, params).await,
            "peer-update" => self.peer_update(peer_id, params),
            "broadcast" => self.broadcast(peer_id, params),
            "role-change-request" => self.role_change_request(peer_id, params).await,
            "role-change" => self.role_change_accept(peer_id, params).await,
            "track-update-request" => self.track_update_request(peer_id, params),
            "change-track-mute-state-request" => self.mute_state_request(peer_id, params),
            "peer-leave-request" => self.peer_leave_request(peer_id, params),
            "end-room" => self.end_room_request(peer_id, params),
            "set-metadata"
            | "get-metadata"
            | "listen-metadata-change"
            | "group-join"
            | "group-leave"
            | "group-add"
            | "group-remove"
            | "get-peer"
            | "find-peer"
            | "peer-iter-next"
            | "peer-name-search"
            | "rtmp-start"
            | "rtmp-stop"
            | "hls-start"
            | "hls-stop"
            | "hls-timed-metadata"
            | "transcription-start"
            | "transcription-stop"
            | "poll-info-set"
            | "whiteboard-create"
            | "whiteboard-get" => {
                Err(Refusal::new(code::NOT_IMPLEMENTED, format!("'{method}' is not implemented by this server yet")))
            }
            other => Err(Refusal::new(code::METHOD_NOT_FOUND, format!("unknown method '{other}'"))),
        }
    }

    async fn notify(&mut self, peer_id: &str, method: &str, params: Value) {
        match method {
            "answer" => self.subscribe_answer(peer_id, params).await,
            "track-update" => self.track_update(peer_id, params),
            "leave" => {
                let reason = params["client_reason"].as_str().unwrap_or("leave").to_owned();
                self.remove_peer(peer_id, LeaveReason::ClientRequest, &reason).await;
            }
            // The router is ICE-lite: it learns the client's address from its checks, so client
            // candidates carry nothing it needs.
            "trickle" | "analytics" => {}
            other => {
                debug!(room = %self.id, peer = %peer_id, method = other, "unknown notify ignored");
                if let Some(p) = self.peers.get(peer_id) {
                    p.push("on-warning", json!({ "code": code::METHOD_NOT_FOUND, "message": format!("unknown notify '{other}' ignored") }));
                }
            }
        }
    }

    /// The role's `maxSubsBitRate` (kbps; 0 is no cap) caps what the router sends the peer.
    async fn apply_subscribe_cap(&self, peer_id: &str, transport: TransportId) {
        let Some(role) = self.peers.get(peer_id).and_then(|p| self.role(&p.role)) else { return };
        let kbps = role.subscribe_params.max_subs_bit_rate;
        let cap = (kbps > 0).then(|| u64::from(kbps) * 1000);
        if let Err(e) = self.hub.router.set_transport_max_bitrate(transport, cap).await {
            warn!(room = %self.id, peer = %peer_id, error = %e, "cannot cap the subscribe bandwidth");
        }
    }

    fn publish_policy(&self, role: &Role) -> PublishPolicy {
        PublishPolicy {
            allow_audio: role.may_publish(TrackKind::Audio),
            allow_video: role.may_publish(TrackKind::Video) || role.may_publish(TrackKind::Screen),
            video_codecs: video_codecs_for(role),
            ..PublishPolicy::default()
        }
    }

    async fn new_transport(&mut self, peer_id: &str) -> Result<TransportInfo, Refusal> {
        let info = self.hub.router.create_transport(self.shard).await?;
        self.shard.get_or_insert(info.id.shard());
        self.hub.register_transport(info.id, &self.id);
        debug!(room = %self.id, peer = %peer_id, transport = %info.id, "transport created");
        Ok(info)
    }

    async fn close_transport(&self, id: TransportId) {
        self.hub.unregister_transport(id);
        if let Err(e) = self.hub.router.close_transport(id).await {
            debug!(transport = %id, error = %e, "close_transport");
        }
    }

    async fn join(&mut self, peer_id: &str, params: Value) -> Result<Value, Refusal> {
        let Some(offer) = params["offer"]["sdp"].as_str() else {
            return Err(Refusal::new(
                code::BAD_REQUEST,
                "join needs an offer: {\"offer\":{\"type\":\"offer\",\"sdp\":...}}",
            ));
        };
        let name = string_param(&params, "name", MAX_NAME)?.unwrap_or_default();
        let data = string_param(&params, "data", MAX_DATA)?.unwrap_or_default();
        let role_name = self.peers.get(peer_id).map(|p| p.role.clone()).unwrap_or_default();
        let Some(role) = self.role(&role_name) else {
            return Err(Refusal::new(code::FORBIDDEN, format!("role '{role_name}' is not in the room's template")));
        };
        let policy = self.publish_policy(role);
        if self.peers.get(peer_id).is_some_and(|p| p.joined) {
            // A repeated join (the SDK re-sends it after a 5xx): start over as a fresh
            // negotiation, without telling the others the peer left.
            self.drop_media(peer_id).await;
        }
        let transport = self.new_transport(peer_id).await?;
        let answer = match answer_publish_offer(offer, &transport, &policy)
            .map_err(|e| Refusal::new(code::BAD_REQUEST, format!("unusable offer: {e}")))
            .and_then(|a| refuse_rejected(&a, &role_name).map(|_| a))
        {
            Ok(a) => a,
            Err(refusal) => {
                self.close_transport(transport.id).await;
                return Err(refusal);
            }
        };
        self.hub.router.connect_transport(transport.id, answer.connect.clone()).await?;
        if self.session.is_none() {
            let started = now_ms();
            self.session = Some((random_id(), started));
            let room = self.event_room();
            self.emit(RoomEvent::SessionStarted { room, started_at: system_time(started) });
        }
        let room = self.event_room();
        let Some(peer) = self.peers.get_mut(peer_id) else {
            return Err(Refusal::new(code::CONFLICT, "peer left during join"));
        };
        let rejoin = peer.joined;
        peer.name = name;
        peer.data = data;
        peer.video_on_request = params["disableVidAutoSub"].as_bool().unwrap_or(false);
        peer.joined = true;
        peer.joined_at_ms = now_ms();
        peer.publish =
            Some(PublishSide { transport, ice_ufrag: answer.connect.ice_ufrag.clone(), tracks: BTreeMap::new() });
        info!(room = %self.id, peer = %peer_id, name = %peer.name, role = %peer.role, "peer joined");
        if !rejoin {
            let peer = peer.event();
            self.emit(RoomEvent::PeerJoined { room, peer });
        }
        Ok(json!({ "type": "answer", "sdp": answer.sdp }))
    }

    /// After the join answer: the peer list, the subscribe connection, the others told.
    async fn after_join(&mut self, peer_id: &str) {
        let list = self.peer_list_for(peer_id);
        if let Some(p) = self.peers.get(peer_id) {
            p.push("peer-list", list);
        }
        if self.peers.get(peer_id).is_some_and(|p| p.subscribe.is_none()) {
            match self.new_transport(peer_id).await {
                Ok(transport) => {
                    if let Err(e) = self.hub.router.open_data_channel(transport.id, DATA_CHANNEL_LABEL).await {
                        warn!(room = %self.id, peer = %peer_id, error = %e, "cannot open the ion-sfu data channel");
                    }
                    self.apply_subscribe_cap(peer_id, transport.id).await;
                    if let Some(p) = self.peers.get_mut(peer_id) {
                        p.subscribe = Some(SubscribeSide {
                            transport,
                            connected: false,
                            last_offer: None,
                            awaiting_answer: false,
                            dirty: false,
                            tracks: BTreeMap::new(),
                        });
                    }
                }
                Err(e) => {
                    warn!(room = %self.id, peer = %peer_id, error = %e.message, "no subscribe transport");
                    if let Some(p) = self.peers.get(peer_id) {
                        p.push("on-error", json!({ "code": e.code, "message": e.message }));
                    }
                    return;
                }
            }
        }
        self.renegotiate(peer_id).await;
        let Some(p) = self.peers.get(peer_id) else { return };
        let note = p.notification();
        self.push_others(peer_id, "on-peer-join", &note);
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
        let text = rpc::push(method, params.clone());
        for p in self.peers.values().filter(|p| p.joined && p.id != peer_id) {
            p.send(text.clone());
        }
    }

    async fn publish_offer(&mut self, peer_id: &str, params: Value) -> Result<Value, Refusal> {
        let Some(sdp) = params["desc"]["sdp"].as_str() else {
            return Err(Refusal::new(code::BAD_REQUEST, "offer needs {\"desc\":{\"type\":\"offer\",\"sdp\":...}}"));
        };
        let announced: BTreeMap<String, TrackState> = match params.get("tracks") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(t) => serde_json::from_value(t.clone())
                .map_err(|e| Refusal::new(code::BAD_REQUEST, format!("bad tracks map: {e}")))?,
        };
        let Some(peer) = self.peers.get(peer_id).filter(|p| p.joined) else {
            // After a server restart the SDK re-offers on a new socket without `join`; the
            // session is gone, and an error here would be retried for 60 s (§9.8).
            if let Some(p) = self.peers.get(peer_id) {
                p.push(
                    "on-error",
                    json!({ "code": code::NOT_FOUND, "message": "this peer's session is gone; join again" }),
                );
            }
            return Err(Refusal::new(code::CONFLICT, "offer before join"));
        };
        let role = self.role(&peer.role).ok_or_else(|| Refusal::new(code::FORBIDDEN, "role vanished"))?;
        let policy = self.publish_policy(role);
        let publish = peer.publish.as_ref().ok_or_else(|| Refusal::new(code::CONFLICT, "no publish connection"))?;
        let answer = answer_publish_offer(sdp, &publish.transport, &policy)
            .map_err(|e| Refusal::new(code::BAD_REQUEST, format!("unusable offer: {e}")))?;
        refuse_rejected(&answer, &peer.role)?;
        // Every sending m-line must name its track, and the role must allow its source.
        let mut next: Vec<(String, TrackState, &crate::sdp::PublishedTrack)> = Vec::new();
        for t in &answer.tracks {
            let Some(track_id) = t.track_id.clone() else {
                return Err(Refusal::new(code::BAD_REQUEST, format!("m-line mid {} has no a=msid track id", t.mid)));
            };
            let kind_name = match t.produce.kind {
                MediaKind::Audio => "audio",
                MediaKind::Video => "video",
            };
            let state = announced.get(&track_id).cloned().unwrap_or_else(|| TrackState {
                track_id: track_id.clone(),
                stream_id: t.stream_id.clone().unwrap_or_default(),
                kind: kind_name.into(),
                source: "regular".into(),
                mute: false,
                description: String::new(),
            });
            let needed = match (t.produce.kind, state.is_screen()) {
                (MediaKind::Audio, _) => TrackKind::Audio,
                (MediaKind::Video, true) => TrackKind::Screen,
                (MediaKind::Video, false) => TrackKind::Video,
            };
            if !role.may_publish(needed) {
                return Err(Refusal::new(
                    code::FORBIDDEN,
                    format!("role '{}' may not publish {needed:?} (track {track_id})", peer.role).to_lowercase(),
                ));
            }
            next.push((track_id, state, t));
        }
        let transport_id = publish.transport.id;
        let ufrag_changed = publish.ice_ufrag != answer.connect.ice_ufrag;
        let current: Vec<String> = publish.tracks.keys().cloned().collect();

        if ufrag_changed {
            // An ICE restart: the client's new credentials.
            if let Err(e) = self.hub.router.connect_transport(transport_id, answer.connect.clone()).await {
                debug!(error = %e, "connect_transport on ICE restart");
            }
        }
        let mut added = BTreeMap::new();
        let mut updated = Vec::new();
        for (track_id, state, t) in &next {
            if current.contains(track_id) {
                updated.push(state.clone());
                continue;
            }
            let mut produce = t.produce.clone();
            // Bandwidth allocation serves screenshares first (see docs/bandwidth.md).
            produce.priority = if state.is_screen() { PRIORITY_SCREEN } else { PRIORITY_DEFAULT };
            let producer = self.hub.router.produce(transport_id, produce).await?;
            added.insert(
                track_id.clone(),
                Published {
                    state: state.clone(),
                    producer,
                    kind: t.produce.kind,
                    rtx_payload_type: t.produce.rtx_payload_type,
                    fmtp: t.fmtp.clone(),
                    started_at_ms: now_ms(),
                },
            );
        }
        let removed: Vec<String> = current.into_iter().filter(|id| !next.iter().any(|(n, ..)| n == id)).collect();
        let mut removed_states = Vec::new();
        let Some(peer) = self.peers.get_mut(peer_id) else { return Err(Refusal::new(code::CONFLICT, "peer left")) };
        let Some(publish) = peer.publish.as_mut() else { return Err(Refusal::new(code::CONFLICT, "peer left")) };
        publish.ice_ufrag = answer.connect.ice_ufrag.clone();
        let mut track_events = Vec::new();
        for id in &removed {
            if let Some(p) = publish.tracks.remove(id) {
                track_events.push((false, p.event()));
                removed_states.push((p.state, p.producer));
            }
        }
        track_events.extend(added.values().map(|p| (true, p.event())));
        for state in updated {
            if let Some(p) = publish.tracks.get_mut(&state.track_id) {
                p.state = state;
            }
        }
        let added_states: Vec<TrackState> = added.values().map(|p| p.state.clone()).collect();
        publish.tracks.extend(added);
        let brief = peer.info().brief();
        let event_peer = peer.event();
        let room = self.event_room();
        for (is_add, track) in track_events {
            let (room, peer) = (room.clone(), event_peer.clone());
            self.emit(if is_add {
                RoomEvent::TrackAdded { room, peer, track }
            } else {
                RoomEvent::TrackRemoved { room, peer, track, stopped_at: SystemTime::now() }
            });
        }
        for (_, producer) in &removed_states {
            if let Err(e) = self.hub.router.close_producer(*producer).await {
                debug!(error = %e, "close_producer");
            }
        }
        self.tap_published().await;
        if !added_states.is_empty() {
            info!(room = %self.id, peer = %peer_id, tracks = ?added_states.iter().map(|t| &t.track_id).collect::<Vec<_>>(), "published");
            self.push_others(
                peer_id,
                "on-track-add",
                &json!({ "peer": brief, "tracks": track_map(added_states.iter()) }),
            );
        }
        if !removed_states.is_empty() {
            self.push_others(
                peer_id,
                "on-track-remove",
                &json!({ "peer": brief, "tracks": track_map(removed_states.iter().map(|(s, _)| s)) }),
            );
        }
        if !added_states.is_empty() || !removed_states.is_empty() {
            self.renegotiate_others(peer_id).await;
        }
        Ok(json!({ "type": "answer", "sdp": answer.sdp }))
    }

    async fn renegotiate_others(&mut self, peer_id: &str) {
        let others: Vec<String> =
            self.peers.values().filter(|p| p.joined && p.id != peer_id).map(|p| p.id.clone()).collect();
        for id in others {
            self.renegotiate(&id).await;
        }
    }

    /// Brings a peer's subscribe connection in line with what it should receive: consumers
    /// for new tracks, closed ones for gone tracks, and a new offer if anything changed. Waits
    /// (marks dirty) while an earlier offer is unanswered or the socket is away.
    async fn renegotiate(&mut self, peer_id: &str) {
        let Some(peer) = self.peers.get(peer_id) else { return };
        let Some(role) = self.role(&peer.role) else { return };
        let Some(sub) = &peer.subscribe else { return };
        if sub.awaiting_answer || peer.out.is_none() {
            if let Some(sub) = self.peers.get_mut(peer_id).and_then(|p| p.subscribe.as_mut()) {
                sub.dirty = true;
            }
            return;
        }
        // What the role should receive: every track of every other joined peer whose role it
        // subscribes to, in a stable order.
        let mut wanted: Vec<(String, Published)> = Vec::new();
        for other in self.peers.values().filter(|p| p.joined && p.id != peer_id && role.subscribes_to(&p.role)) {
            if let Some(publish) = &other.publish {
                wanted.extend(publish.tracks.iter().map(|(id, t)| (id.clone(), t.clone())));
            }
        }
        let transport = sub.transport.id;
        let stale: Vec<(String, ConsumerId)> = sub
            .tracks
            .iter()
            .filter(|(id, _)| !wanted.iter().any(|(w, _)| w == *id))
            .map(|(id, s)| (id.clone(), s.consumer.id))
            .collect();
        let unchanged = stale.is_empty() && wanted.iter().all(|(id, _)| sub.tracks.contains_key(id));
        if unchanged && sub.last_offer.is_some() {
            return;
        }
        let mids = assign_mids(
            sub.last_offer.as_ref(),
            &wanted.iter().map(|(id, t)| (t.kind, id.as_str())).collect::<Vec<_>>(),
        );
        let video_on_request = peer.video_on_request;
        let existing: BTreeMap<String, Subscribed> = sub.tracks.clone();
        for (_, consumer) in &stale {
            if let Err(e) = self.hub.router.close_consumer(*consumer).await {
                debug!(error = %e, "close_consumer (its producer may be gone already)");
            }
        }
        let mut tracks = BTreeMap::new();
        for ((track_id, published), mid) in wanted.iter().zip(mids) {
            if let Some(s) = existing.get(track_id) {
                tracks.insert(track_id.clone(), s.clone());
                continue;
            }
            let paused = video_on_request && published.kind == MediaKind::Video;
            let params = ConsumeParams {
                producer: published.producer,
                payload_type: None,
                rtx_payload_type: published.rtx_payload_type,
                mid: Some(mid.clone()),
                extensions: subscribe_extensions(published.kind),
                paused,
                preferred_layer: None,
            };
            match self.hub.router.consume(transport, params).await {
                Ok(consumer) => {
                    tracks.insert(
                        track_id.clone(),
                        Subscribed {
                            consumer,
                            mid,
                            stream_id: published.state.stream_id.clone(),
                            fmtp: published.fmtp.clone(),
                            paused,
                            asked: false,
                        },
                    );
                }
                Err(e) => warn!(room = %self.id, peer = %peer_id, track = %track_id, error = %e, "consume failed"),
            }
        }
        let Some(peer) = self.peers.get_mut(peer_id) else { return };
        let Some(sub) = peer.subscribe.as_mut() else { return };
        let list: Vec<SubscribeTrack> = tracks
            .iter()
            .map(|(track_id, s)| SubscribeTrack {
                consumer: s.consumer.clone(),
                mid: s.mid.clone(),
                stream_id: s.stream_id.clone(),
                track_id: track_id.clone(),
                extensions: subscribe_extensions(s.consumer.kind),
                fmtp: s.fmtp.clone(),
            })
            .collect();
        match subscribe_offer(&sub.transport, &list, &SubscribeOptions::default(), sub.last_offer.as_ref()) {
            Ok(offer) => {
                let text = rpc::push("offer", json!({ "type": "offer", "sdp": offer.sdp }));
                sub.tracks = tracks;
                sub.last_offer = Some(offer);
                sub.awaiting_answer = true;
                sub.dirty = false;
                peer.send(text);
            }
            Err(e) => warn!(room = %self.id, peer = %peer_id, error = %e, "cannot write the subscribe offer"),
        }
    }

    async fn subscribe_answer(&mut self, peer_id: &str, params: Value) {
        let Some(sdp) = params["desc"]["sdp"].as_str() else {
            if let Some(p) = self.peers.get(peer_id) {
                p.push("on-warning", json!({ "code": code::BAD_REQUEST, "message": "answer needs desc.sdp" }));
            }
            return;
        };
        let Some(sub) = self.peers.get_mut(peer_id).and_then(|p| p.subscribe.as_mut()) else { return };
        let Some(offer) = sub.last_offer.as_ref().filter(|_| sub.awaiting_answer) else {
            debug!(peer = %peer_id, "answer with no offer out; ignored");
            return;
        };
        let parsed = read_subscribe_answer(sdp, offer);
        sub.awaiting_answer = false;
        let transport = sub.transport.id;
        let first = !sub.connected;
        match parsed {
            Ok(answer) => {
                if first {
                    sub.connected = true;
                    if let Err(e) = self.hub.router.connect_transport(transport, answer.connect).await {
                        warn!(room = %self.id, peer = %peer_id, error = %e, "connect subscribe transport");
                    }
                }
                if !answer.refused.is_empty() {
                    warn!(room = %self.id, peer = %peer_id, refused = ?answer.refused, "client refused subscribe m-lines");
                }
            }
            Err(e) => {
                warn!(room = %self.id, peer = %peer_id, error = %e, "bad subscribe answer");
                if let Some(p) = self.peers.get(peer_id) {
                    p.push("on-warning", json!({ "code": code::BAD_REQUEST, "message": format!("bad answer: {e}") }));
                }
            }
        }
        if self.peers.get(peer_id).and_then(|p| p.subscribe.as_ref()).is_some_and(|s| s.dirty) {
            self.renegotiate(peer_id).await;
        }
    }

    fn track_update(&mut self, peer_id: &str, params: Value) {
        let Ok(tracks) = serde_json::from_value::<BTreeMap<String, TrackState>>(params["tracks"].clone()) else {
            if let Some(p) = self.peers.get(peer_id) {
                p.push(
                    "on-warning",
                    json!({ "code": code::BAD_REQUEST, "message": "track-update needs a tracks map" }),
                );
            }
            return;
        };
        let Some(peer) = self.peers.get_mut(peer_id) else { return };
        let Some(publish) = peer.publish.as_mut() else { return };
        let mut changed = Vec::new();
        let mut events = Vec::new();
        for (id, state) in tracks {
            if let Some(p) = publish.tracks.get_mut(&id)
                && (p.state.mute != state.mute || p.state.description != state.description)
            {
                p.state.mute = state.mute;
                p.state.description = state.description;
                changed.push(p.state.clone());
                events.push(p.event());
            }
        }
        if changed.is_empty() {
            return;
        }
        let brief = peer.info().brief();
        let event_peer = peer.event();
        let room = self.event_room();
        for track in events {
            self.emit(RoomEvent::TrackUpdated { room: room.clone(), peer: event_peer.clone(), track });
        }
        self.push_others(peer_id, "on-track-update", &json!({ "peer": brief, "tracks": track_map(changed.iter()) }));
    }

    fn peer_update(&mut self, peer_id: &str, params: Value) -> Result<Value, Refusal> {
        let name = string_param(&params, "name", MAX_NAME)?;
        let data = string_param(&params, "data", MAX_DATA)?;
        if name.is_none() && data.is_none() {
            return Err(Refusal::new(code::INVALID_PARAMS, "peer-update needs name or data"));
        }
        let Some(peer) = self.peers.get_mut(peer_id).filter(|p| p.joined) else {
            return Err(Refusal::new(code::CONFLICT, "peer-update before join"));
        };
        if let Some(n) = name {
            peer.name = n;
        }
        if let Some(d) = data {
            peer.data = d;
        }
        let note = peer.notification();
        let (name, metadata, event_peer) = (peer.name.clone(), peer.data.clone(), peer.event());
        self.push_others(peer_id, "on-peer-update", &note);
        let room = self.event_room();
        self.emit(RoomEvent::PeerUpdated { room, peer: event_peer, name, metadata });
        Ok(json!({}))
    }

    fn broadcast(&mut self, peer_id: &str, params: Value) -> Result<Value, Refusal> {
        let info = params.get("info").filter(|i| i.is_object()).cloned().ok_or_else(|| {
            Refusal::new(code::INVALID_PARAMS, "broadcast needs info: {\"message\": ..., \"type\": ...}")
        })?;
        if info.to_string().len() > MAX_DATA {
            return Err(Refusal::new(code::TOO_LARGE, format!("message longer than {MAX_DATA} bytes")));
        }
        let Some(sender) = self.peers.get(peer_id).filter(|p| p.joined) else {
            return Err(Refusal::new(code::CONFLICT, "broadcast before join"));
        };
        let roles: Option<Vec<String>> = match params.get("roles") {
            None | Some(Value::Null) => None,
            Some(r) => Some(
                serde_json::from_value(r.clone())
                    .map_err(|_| Refusal::new(code::INVALID_PARAMS, "roles must be a list of role names"))?,
            ),
        };
        let to_peer = params.get("peer_id").and_then(Value::as_str).map(str::to_owned);
        if let Some(target) = &to_peer
            && !self.peers.get(target).is_some_and(|p| p.joined)
        {
            return Err(Refusal::new(code::NOT_FOUND, format!("peer {target} is not in the room")));
        }
        let message_id = random_id();
        let timestamp = now_ms();
        let mut note = json!({
            "peer": sender.info().brief(),
            "private": to_peer.is_some(),
            "message_id": message_id,
            "timestamp": timestamp,
            "info": info,
        });
        if let Some(r) = &roles {
            note["roles"] = json!(r);
        }
        let text = rpc::push("on-broadcast", note);
        // Never to the sender: its SDK keeps its own copy.
        for p in self.peers.values().filter(|p| p.joined && p.id != peer_id) {
            let to_this = match (&to_peer, &roles) {
                (Some(target), _) => &p.id == target,
                (None, Some(roles)) => roles.contains(&p.role),
                (None, None) => true,
            };
            if to_this {
                p.send(text.clone());
            }
        }
        Ok(json!({ "timestamp": timestamp, "message_id": message_id }))
    }

    /// Closes a peer's transports and forgets its tracks, without telling anyone (a repeated
    /// join starts over).
    async fn drop_media(&mut self, peer_id: &str) {
        let Some(peer) = self.peers.get_mut(peer_id) else { return };
        let transports: Vec<TransportId> = peer
            .publish
            .take()
            .map(|p| p.transport.id)
            .into_iter()
            .chain(peer.subscribe.take().map(|s| s.transport.id))
            .collect();
        for t in transports {
            self.close_transport(t).await;
        }
    }

    /// Removes a peer: its transports (the router closes its producers and the consumers of
    /// them), `on-peer-leave` to the others, and their subscribe connections renegotiated.
    async fn remove_peer(&mut self, peer_id: &str, reason: LeaveReason, message: &str) {
        let Some(peer) = self.peers.get(peer_id) else { return };
        let was_joined = peer.joined;
        let tracks: Vec<EventTrack> =
            peer.publish.iter().flat_map(|p| p.tracks.values().map(Published::event)).collect();
        self.drop_media(peer_id).await;
        let Some(peer) = self.peers.remove(peer_id) else { return };
        self.role_requests.retain(|_, r| r.target != peer_id);
        info!(room = %self.id, peer = %peer_id, name = %peer.name, %reason, message, "peer left");
        if was_joined {
            let room = self.event_room();
            let now = SystemTime::now();
            for track in tracks {
                self.emit(RoomEvent::TrackRemoved { room: room.clone(), peer: peer.event(), track, stopped_at: now });
            }
            self.emit(RoomEvent::PeerLeft {
                room,
                peer: peer.event(),
                left_at: now,
                reason,
                message: message.to_owned(),
            });
        }
        if was_joined && !self.ending {
            self.push_others(peer_id, "on-peer-leave", &json!({ "peer_id": peer_id, "role": peer.role, "info": { "name": peer.name, "user_id": peer.user_id } }));
            // Their consumers of this peer's tracks went with its transports; `renegotiate`
            // finds those tracks unwanted and takes them out of the next offer.
            let others: Vec<String> = self.peers.keys().cloned().collect();
            for id in others {
                self.renegotiate(&id).await;
            }
        }
        if !self.ending && self.peers.values().all(|p| !p.joined) {
            self.end_session(crate::events::LAST_PEER_LEFT, None, false);
        }
    }

    // ---- Permissioned requests -------------------------------------------------------

    /// The requester's role grants `allowed`; otherwise a 403 naming the permission.
    fn require(&self, peer_id: &str, allowed: impl Fn(&Permissions) -> bool, name: &str) -> Result<(), Refusal> {
        let peer = self
            .peers
            .get(peer_id)
            .filter(|p| p.joined)
            .ok_or_else(|| Refusal::new(code::CONFLICT, "join the room first"))?;
        let role = self
            .role(&peer.role)
            .ok_or_else(|| Refusal::new(code::FORBIDDEN, format!("role '{}' is not in the template", peer.role)))?;
        if allowed(&role.permissions) {
            Ok(())
        } else {
            Err(Refusal::new(
                code::FORBIDDEN,
                format!("not allowed: role '{}' lacks the '{name}' permission", peer.role),
            ))
        }
    }

    /// A joined peer other than nobody: 404 otherwise.
    fn joined_peer(&self, peer_id: &str) -> Result<&Peer, Refusal> {
        self.peers
            .get(peer_id)
            .filter(|p| p.joined)
            .ok_or_else(|| Refusal::new(code::NOT_FOUND, format!("peer {peer_id} is not in the room")))
    }

    fn push_all(&self, method: &str, params: &Value) {
        let text = rpc::push(method, params.clone());
        for p in self.peers.values().filter(|p| p.joined) {
            p.send(text.clone());
        }
    }

    /// `role-change-request {requested_for, role, force}` or the bulk `{roles, role, force}`
    /// (always applied at once).
    async fn role_change_request(&mut self, peer_id: &str, params: Value) -> Result<Value, Refusal> {
        self.require(peer_id, |p| p.change_role, "changeRole")?;
        let role = params["role"]
            .as_str()
            .ok_or_else(|| Refusal::new(code::BAD_REQUEST, "role-change-request needs role"))?
            .to_owned();
        if self.role(&role).is_none() {
            return Err(Refusal::new(code::BAD_REQUEST, format!("unknown role '{role}'")));
        }
        let force = match params.get("force") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(Refusal::new(code::BAD_REQUEST, "force must be a boolean")),
        };
        if let Some(roles) = params.get("roles").filter(|r| !r.is_null()) {
            let roles: Vec<String> = serde_json::from_value(roles.clone())
                .map_err(|_| Refusal::new(code::BAD_REQUEST, "roles must be a list of role names"))?;
            let targets: Vec<String> = self
                .peers
                .values()
                .filter(|p| p.joined && p.role != role && roles.contains(&p.role))
                .map(|p| p.id.clone())
                .collect();
            for t in targets {
                self.apply_role_change(&t, &role, Some(peer_id)).await;
            }
            return Ok(json!({}));
        }
        let target = params["requested_for"]
            .as_str()
            .ok_or_else(|| Refusal::new(code::BAD_REQUEST, "role-change-request needs requested_for or roles"))?
            .to_owned();
        self.joined_peer(&target)?;
        if force {
            self.apply_role_change(&target, &role, Some(peer_id)).await;
            return Ok(json!({}));
        }
        if self.role_requests.len() >= MAX_ROLE_REQUESTS {
            return Err(Refusal::new(code::CONFLICT, "too many role changes waiting for an answer"));
        }
        let token = random_id();
        self.role_requests.insert(
            token.clone(),
            RoleRequest { target: target.clone(), role: role.clone(), requested_by: peer_id.into() },
        );
        if let Some(t) = self.peers.get(&target) {
            t.push("on-role-change-request", json!({ "requested_by": peer_id, "role": role, "token": token }));
        }
        Ok(json!({}))
    }

    /// `role-change {requested_by, role, token}`: the target accepts a request.
    async fn role_change_accept(&mut self, peer_id: &str, params: Value) -> Result<Value, Refusal> {
        let token =
            params["token"].as_str().ok_or_else(|| Refusal::new(code::BAD_REQUEST, "role-change needs token"))?;
        self.peers
            .get(peer_id)
            .filter(|p| p.joined)
            .ok_or_else(|| Refusal::new(code::CONFLICT, "join the room first"))?;
        let request = self.role_requests.get(token).filter(|r| r.target == peer_id).ok_or_else(|| {
            Refusal::new(code::FORBIDDEN, "no role change was requested of this peer with this token")
        })?;
        if let Some(role) = params["role"].as_str()
            && role != request.role
        {
            return Err(Refusal::new(
                code::BAD_REQUEST,
                format!("the request was for role '{}', not '{role}'", request.role),
            ));
        }
        let Some(request) = self.role_requests.remove(token) else { return Ok(json!({})) };
        if self.role(&request.role).is_none() {
            return Err(Refusal::new(code::BAD_REQUEST, format!("unknown role '{}'", request.role)));
        }
        self.apply_role_change(peer_id, &request.role, Some(&request.requested_by)).await;
        Ok(json!({}))
    }

    /// Moves a joined peer to `new_role`: its SDK is told first (`on-policy-change`, which
    /// makes it republish for the role), then everyone (`on-peer-update`); tracks the role may
    /// not publish are closed; every subscribe connection follows `subscribeToRoles`.
    async fn apply_role_change(&mut self, peer_id: &str, new_role: &str, requested_by: Option<&str>) {
        let Some(role) = self.role(new_role).cloned() else { return };
        let policy = self.policy_params(new_role);
        let Some(peer) = self.peers.get_mut(peer_id).filter(|p| p.joined) else { return };
        if peer.role == new_role {
            return;
        }
        let previous = std::mem::replace(&mut peer.role, new_role.to_owned());
        let mut stopped = Vec::new();
        if let Some(publish) = peer.publish.as_mut() {
            let ids: Vec<String> = publish
                .tracks
                .iter()
                .filter(|(_, t)| !role.may_publish(t.needed_kind()))
                .map(|(id, _)| id.clone())
                .collect();
            stopped.extend(ids.iter().filter_map(|id| publish.tracks.remove(id)));
        }
        peer.push("on-policy-change", policy);
        let note = peer.notification();
        let brief = peer.info().brief();
        let event_peer = peer.event();
        info!(room = %self.id, peer = %peer_id, from = %previous, to = %new_role, by = ?requested_by, "role changed");
        self.push_all("on-peer-update", &note);
        for t in &stopped {
            if let Err(e) = self.hub.router.close_producer(t.producer).await {
                debug!(error = %e, "close_producer on role change");
            }
        }
        let room = self.event_room();
        if !stopped.is_empty() {
            let states: Vec<TrackState> = stopped.iter().map(|t| t.state.clone()).collect();
            self.push_others(peer_id, "on-track-remove", &json!({ "peer": brief, "tracks": track_map(states.iter()) }));
            for t in &stopped {
                self.emit(RoomEvent::TrackRemoved {
                    room: room.clone(),
                    peer: event_peer.clone(),
                    track: t.event(),
                    stopped_at: SystemTime::now(),
                });
            }
        }
        self.emit(RoomEvent::RoleChanged {
            room,
            peer: event_peer,
            previous_role: previous,
            role: new_role.to_owned(),
            requested_by: requested_by.map(str::to_owned),
            changed_at: SystemTime::now(),
        });
        let ids: Vec<String> = self.peers.values().filter(|p| p.joined).map(|p| p.id.clone()).collect();
        for id in ids {
            self.renegotiate(&id).await;
        }
    }

    /// `track-update-request {requested_for, track_id, stream_id, mute}`: asks one peer to mute
    /// (`mute`) or unmute (`unmute`) one of its tracks.
    fn track_update_request(&mut self, peer_id: &str, params: Value) -> Result<Value, Refusal> {
        let mute = params["mute"]
            .as_bool()
            .ok_or_else(|| Refusal::new(code::BAD_REQUEST, "track-update-request needs mute: true or false"))?;
        if mute {
            self.require(peer_id, |p| p.mute, "mute")?;
        } else {
            self.require(peer_id, |p| p.unmute, "unmute")?;
        }
        let target = params["requested_for"]
            .as_str()
            .ok_or_else(|| Refusal::new(code::BAD_REQUEST, "track-update-request needs requested_for"))?;
        let track_id = params["track_id"]
            .as_str()
            .ok_or_else(|| Refusal::new(code::BAD_REQUEST, "track-update-request needs track_id"))?;
        let peer = self.joined_peer(target)?;
        let track = peer
            .publish
            .as_ref()
            .and_then(|p| p.tracks.get(track_id))
            .ok_or_else(|| Refusal::new(code::NOT_FOUND, format!("peer {target} publishes no track {track_id}")))?;
        let stream_id = params["stream_id"].as_str().unwrap_or(&track.state.stream_id);
        peer.push(
            "on-track-update-request",
            json!({ "requested_by": peer_id, "track_id": track_id, "stream_id": stream_id, "mute": mute }),
        );
        Ok(json!({}))
    }

    /// `change-track-mute-state-request {requested_for?, roles?, type?, source?, value}`: asks
    /// one peer, the peers of some roles, or everyone else, to mute (`value: true`) or unmute
    /// their matching tracks.
    fn mute_state_request(&mut self, peer_id: &str, params: Value) -> Result<Value, Refusal> {
        let value = params["value"].as_bool().ok_or_else(|| {
            Refusal::new(code::BAD_REQUEST, "change-track-mute-state-request needs value: true or false")
        })?;
        if value {
            self.require(peer_id, |p| p.mute, "mute")?;
        } else {
            self.require(peer_id, |p| p.unmute, "unmute")?;
        }
        let kind = match params.get("type") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) if t == "audio" || t == "video" => Some(t.clone()),
            Some(_) => return Err(Refusal::new(code::BAD_REQUEST, "type must be \"audio\" or \"video\"")),
        };
        let source = match params.get("source") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(Refusal::new(code::BAD_REQUEST, "source must be a string")),
        };
        let roles: Option<Vec<String>> = match params.get("roles") {
            None | Some(Value::Null) => None,
            Some(r) => Some(
                serde_json::from_value(r.clone())
                    .map_err(|_| Refusal::new(code::BAD_REQUEST, "roles must be a list of role names"))?,
            ),
        };
        let target = params["requested_for"].as_str();
        if let Some(t) = target {
            self.joined_peer(t)?;
        }
        let mut note = json!({ "requested_by": peer_id, "value": value });
        if let Some(k) = &kind {
            note["type"] = json!(k);
        }
        if let Some(s) = &source {
            note["source"] = json!(s);
        }
        if let Some(r) = &roles {
            note["roles"] = json!(r);
        }
        let text = rpc::push("on-change-track-mute-state-request", note);
        for p in self.peers.values().filter(|p| p.joined && p.id != peer_id) {
            let matches = match (target, &roles) {
                (Some(t), _) => p.id == t,
                (None, Some(roles)) => roles.contains(&p.role),
                (None, None) => true,
            };
            if matches {
                p.send(text.clone());
            }
        }
        Ok(json!({}))
    }

    /// `peer-leave-request {requested_for, reason}`: removes a peer (after the response).
    fn peer_leave_request(&mut self, peer_id: &str, params: Value) -> Result<Value, Refusal> {
        self.require(peer_id, |p| p.remove_others, "removeOthers")?;
        let target = params["requested_for"]
            .as_str()
            .ok_or_else(|| Refusal::new(code::BAD_REQUEST, "peer-leave-request needs requested_for"))?
            .to_owned();
        let reason = string_param(&params, "reason", MAX_NAME)
            .map_err(|r| Refusal::new(code::BAD_REQUEST, r.message))?
            .unwrap_or_default();
        self.joined_peer(&target)?;
        self.deferred.push(Deferred::Kick { target, by: peer_id.to_owned(), reason });
        Ok(json!({}))
    }

    /// `end-room {lock, reason}`: ends the session for everyone (after the response).
    fn end_room_request(&mut self, peer_id: &str, params: Value) -> Result<Value, Refusal> {
        self.require(peer_id, |p| p.end_room, "endRoom")?;
        let lock = match params.get("lock") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(Refusal::new(code::BAD_REQUEST, "lock must be a boolean")),
        };
        let reason = string_param(&params, "reason", MAX_NAME)
            .map_err(|r| Refusal::new(code::BAD_REQUEST, r.message))?
            .unwrap_or_default();
        self.deferred.push(Deferred::EndRoom { by: peer_id.to_owned(), reason, lock });
        Ok(json!({}))
    }

    /// Removes a peer at someone's request: `on-peer-leave-request`, its socket closed, its
    /// media dropped, `on-peer-leave` to the others ("peer kicked").
    async fn kick(&mut self, target: &str, by: Option<&str>, reason: &str) {
        let Some(peer) = self.peers.get_mut(target) else { return };
        peer.send_off(by, reason, false);
        self.remove_peer(target, LeaveReason::PeerKicked, reason).await;
    }

    /// Ends the room: everyone but the requester (who leaves by itself after the response)
    /// gets `on-peer-leave-request {room_end: true}` and is removed ("room ended"); the
    /// session closes with `session_reason`; `lock` disables the room in the database.
    async fn end_room(&mut self, by: Option<&str>, reason: &str, lock: bool, session_reason: &str) {
        info!(room = %self.id, by = ?by, reason, lock, "ending the room");
        // Locked first, so nobody joins while the others are being removed.
        if lock && let Err(e) = self.hub.lock_room(&self.id) {
            warn!(room = %self.id, error = %e, "the room could not be locked");
        }
        self.ending = true;
        let ids: Vec<String> = self.peers.keys().cloned().collect();
        for id in ids {
            if Some(id.as_str()) != by
                && let Some(peer) = self.peers.get_mut(&id)
            {
                peer.send_off(by, reason, true);
            }
            self.remove_peer(&id, LeaveReason::RoomEnded, reason).await;
        }
        self.ending = false;
        self.end_session(session_reason, by.map(str::to_owned), lock);
    }

    // ---- Admin (the control daemon) ---------------------------------------------------

    async fn admin(&mut self, op: AdminOp) -> Result<Value, AdminError> {
        if !self.peers.values().any(|p| p.joined) {
            return Err(AdminError::new(404, "room is not active"));
        }
        match op {
            AdminOp::ActiveRoom => {
                let (session_id, started) = self.session.clone().unwrap_or_default();
                let peers: Vec<Value> = self.peers.values().filter(|p| p.joined).map(Peer::admin).collect();
                Ok(json!({
                    "room_id": self.id,
                    "room_name": self.name,
                    "session_id": session_id,
                    "started_at_ms": started,
                    "peers": peers,
                }))
            }
            AdminOp::UpdatePeer { peer_id, name, role, metadata } => {
                self.joined_peer(&peer_id).map_err(AdminError::from)?;
                if let Some(n) = &name
                    && n.len() > MAX_NAME
                {
                    return Err(AdminError::new(400, format!("name longer than {MAX_NAME} bytes")));
                }
                if let Some(m) = &metadata
                    && m.len() > MAX_DATA
                {
                    return Err(AdminError::new(400, format!("metadata longer than {MAX_DATA} bytes")));
                }
                if let Some(r) = &role
                    && self.role(r).is_none()
                {
                    return Err(AdminError::new(400, format!("unknown role '{r}'")));
                }
                if name.is_some() || metadata.is_some() {
                    let Some(peer) = self.peers.get_mut(&peer_id) else {
                        return Err(AdminError::new(404, "peer left"));
                    };
                    if let Some(n) = name {
                        peer.name = n;
                    }
                    if let Some(m) = metadata {
                        peer.data = m;
                    }
                    let note = peer.notification();
                    let (name, metadata, event_peer) = (peer.name.clone(), peer.data.clone(), peer.event());
                    self.push_all("on-peer-update", &note);
                    let room = self.event_room();
                    self.emit(RoomEvent::PeerUpdated { room, peer: event_peer, name, metadata });
                }
                if let Some(r) = role {
                    self.apply_role_change(&peer_id, &r, None).await;
                }
                Ok(self.peers.get(&peer_id).map(Peer::admin).unwrap_or_else(|| json!({})))
            }
            AdminOp::SendMessage { message, kind, peer_id, role } => {
                if message.len() > MAX_DATA {
                    return Err(AdminError::new(400, format!("message longer than {MAX_DATA} bytes")));
                }
                if let Some(p) = &peer_id {
                    self.joined_peer(p).map_err(AdminError::from)?;
                }
                // No `peer`: the SDK takes a message without a sender as the server's.
                let mut note = json!({
                    "private": peer_id.is_some(),
                    "message_id": random_id(),
                    "timestamp": now_ms(),
                    "info": { "message": message, "type": kind },
                });
                if let Some(r) = &role {
                    note["roles"] = json!([r]);
                }
                let text = rpc::push("on-broadcast", note);
                for p in self.peers.values().filter(|p| p.joined) {
                    let to_this = match (&peer_id, &role) {
                        (Some(target), _) => &p.id == target,
                        (None, Some(role)) => &p.role == role,
                        (None, None) => true,
                    };
                    if to_this {
                        p.send(text.clone());
                    }
                }
                Ok(json!({}))
            }
            AdminOp::RemovePeers { peer_id, role, reason } => {
                let targets: Vec<String> = match (&peer_id, &role) {
                    (Some(p), _) => {
                        self.joined_peer(p).map_err(AdminError::from)?;
                        vec![p.clone()]
                    }
                    (None, Some(r)) => {
                        self.peers.values().filter(|p| p.joined && &p.role == r).map(|p| p.id.clone()).collect()
                    }
                    (None, None) => return Err(AdminError::new(400, "remove_peers needs peer_id or role")),
                };
                for t in &targets {
                    self.kick(t, None, &reason).await;
                }
                Ok(json!({ "removed": targets.len() }))
            }
            AdminOp::StartRecording { recording_id, tap } => self.start_recording(recording_id, tap).await,
            AdminOp::RequestKeyframe { recording_id, track_id } => {
                self.request_keyframe(&recording_id, &track_id).await
            }
            AdminOp::StopRecording { recording_id } => self.stop_recording(recording_id).await,
            AdminOp::EndRoom { reason, lock } => {
                let ended = if reason.is_empty() { "room ended".to_owned() } else { reason.clone() };
                self.end_room(None, &reason, lock, &ended).await;
                Ok(json!({}))
            }
        }
    }

    async fn router_event(&mut self, event: Event) {
        match event {
            Event::TransportClosed { transport, reason } => {
                self.hub.unregister_transport(transport);
                if reason == CloseReason::Requested {
                    return;
                }
                let Some(peer) = self.peers.values().find(|p| p.owns(transport)) else { return };
                let id = peer.id.clone();
                warn!(room = %self.id, peer = %id, %transport, ?reason, "transport closed by the router; removing the peer");
                peer.push(
                    "on-peer-leave-request",
                    json!({ "reason": format!("media connection lost: {reason:?}"), "room_end": false }),
                );
                self.remove_peer(&id, LeaveReason::ServerRemovedPeer, &format!("media connection lost: {reason:?}"))
                    .await;
            }
            Event::TransportConnected { transport, remote } => {
                debug!(room = %self.id, %transport, %remote, "transport connected");
            }
            // Proves the channel to the SDK, which then waits the long timeout (§8).
            Event::DataChannelOpened { transport, label }
                if label == DATA_CHANNEL_LABEL
                    && self
                        .peers
                        .values()
                        .any(|p| p.subscribe.as_ref().is_some_and(|s| s.transport.id == transport)) =>
            {
                let _ = self.hub.router.send_data(transport, DATA_CHANNEL_LABEL, "{}").await;
            }
            Event::DataChannelMessage { transport, label, text } => {
                self.data_channel_message(transport, &label, &text).await
            }
            Event::ConsumerLayersChanged { consumer, current, target, degraded, .. } => {
                self.layers_changed(consumer, current, target, degraded)
            }
            Event::AudioLevels { levels } => self.audio_levels(&levels).await,
            Event::LayersNeeded { producer, needed } => {
                if let Some((peer, track)) = self.track_of_producer(producer) {
                    // The 100ms SDK has no message to stop encoding a layer; the router just
                    // forwards none of it (docs/simulcast.md).
                    debug!(room = %self.id, %peer, %track, ?needed, "simulcast layers needed");
                }
            }
            _ => {}
        }
    }

    fn track_of_producer(&self, producer: ProducerId) -> Option<(String, String)> {
        self.peers.values().find_map(|p| {
            let t = p.publish.as_ref()?.tracks.iter().find(|(_, t)| t.producer == producer)?;
            Some((p.id.clone(), t.0.clone()))
        })
    }

    /// `on-track-layer-update` to the subscriber whose consumer's layers changed: the SDK
    /// shows the layer and, with `current_layer: none` and degraded, the track as degraded.
    fn layers_changed(&mut self, consumer: ConsumerId, current: Option<u8>, target: Option<u8>, degraded: bool) {
        let Some((peer, track_id, asked)) = self.peers.values().find_map(|p| {
            let sub = p.subscribe.as_ref()?;
            let (id, s) = sub.tracks.iter().find(|(_, s)| s.consumer.id == consumer)?;
            Some((p, id.clone(), s.asked))
        }) else {
            return;
        };
        // Not before the subscriber asked for the track: the SDK takes a layer update as the
        // answer to its own request and drops that request if it is still queued (its data
        // channel not open yet), so an early `current_layer: none` left the video unasked for,
        // and paused, for good (seen with four pages joining one room). Until it asks, the
        // SDK's own state (`none`) is right anyway.
        if !asked {
            trace!(room = %self.id, peer = %peer.id, track = %track_id, "layer update held: the subscriber has not asked for the track");
            return;
        }
        // While a switch waits for its keyframe the SDK should see the layer it gets, so the
        // current layer is what is forwarded; `expected_layer` is where it is going.
        let current_layer = simulcast::layer_name(current);
        let expected_layer = simulcast::layer_name(target);
        debug!(room = %self.id, peer = %peer.id, track = %track_id, current_layer, expected_layer, degraded, "layer update");
        peer.push(
            "on-track-layer-update",
            json!({ "tracks": { &track_id: {
                "track_id": track_id,
                "current_layer": current_layer,
                "expected_layer": expected_layer,
                "subscriber_degraded": degraded,
                "publisher_degraded": false,
            }}}),
        );
    }

    /// `active-speakers` to every peer when the room's speakers (loudest first) change, from
    /// the router's audio levels (every 500 ms at most). Levels of other rooms' producers are
    /// in the same event and ignored here.
    async fn audio_levels(&mut self, levels: &[AudioLevel]) {
        let mut speakers = Vec::new();
        for l in levels {
            if let Some((peer, track)) = self.track_of_producer(l.producer) {
                speakers.push((peer, track, l.level));
            }
        }
        let names: Vec<(String, String)> = speakers.iter().map(|(p, t, _)| (p.clone(), t.clone())).collect();
        let refresh = !names.is_empty() && self.speakers_pushed_at.is_none_or(|t| t.elapsed() >= SPEAKERS_REFRESH);
        if names == self.speakers && !refresh {
            return;
        }
        let dominant_before = self.speakers.first().map(|(p, _)| p.clone());
        self.speakers = names;
        let list: Vec<Value> = speakers
            .iter()
            .map(|(peer, track, level)| json!({ "peer_id": peer, "track_id": track, "level": level }))
            .collect();
        self.push_all("active-speakers", &json!({ "speaker-list": list }));
        self.speakers_pushed_at = Some(Instant::now());
        // The active speaker's camera comes next after screenshares in bandwidth allocation.
        let dominant = self.speakers.first().map(|(p, _)| p.clone());
        if dominant != dominant_before {
            for (peer, priority) in [(dominant_before, PRIORITY_DEFAULT), (dominant, PRIORITY_SPEAKER)] {
                let Some(peer) = peer.and_then(|p| self.peers.get(&p)) else { continue };
                let producers: Vec<ProducerId> = peer
                    .publish
                    .iter()
                    .flat_map(|p| p.tracks.values())
                    .filter(|t| t.kind == MediaKind::Video && !t.state.is_screen())
                    .map(|t| t.producer)
                    .collect();
                for producer in producers {
                    if let Err(e) = self.hub.router.set_producer_priority(producer, priority).await {
                        debug!(error = %e, "set_producer_priority");
                    }
                }
            }
        }
    }

    /// `prefer-video-track-state` / `prefer-audio-track-state` on the subscribe connection's
    /// `ion-sfu` channel: start or stop forwarding one track. (Layer choice comes with
    /// simulcast; any layer but `none` means "forward".)
    async fn data_channel_message(&mut self, transport: TransportId, label: &str, text: &str) {
        let Some(peer_id) = self
            .peers
            .values()
            .find(|p| p.subscribe.as_ref().is_some_and(|s| s.transport.id == transport))
            .map(|p| p.id.clone())
        else {
            return;
        };
        let reply = match rpc::parse_incoming(text) {
            Ok(Incoming::Request { id, method, params }) => {
                let result = self.track_preference(&peer_id, &method, &params).await;
                Some(match result {
                    Ok(()) => rpc::response(&id, json!({})),
                    Err(r) => rpc::error_response(&id, r.code, &r.message),
                })
            }
            Ok(_) => None,
            Err(e) => Some(rpc::error_response(&Value::Null, e.code(), &e.to_string())),
        };
        if let Some(reply) = reply
            && let Err(e) = self.hub.router.send_data(transport, label, &reply).await
        {
            debug!(peer = %peer_id, error = %e, "data channel reply not sent");
        }
    }

    async fn track_preference(&mut self, peer_id: &str, method: &str, params: &Value) -> Result<(), Refusal> {
        let track_id =
            params["track_id"].as_str().ok_or_else(|| Refusal::new(code::INVALID_PARAMS, "track_id missing"))?;
        let (pause, layer) = match method {
            "prefer-video-track-state" => {
                let name = params["max_spatial_layer"].as_str().unwrap_or("high");
                let layer = simulcast::parse_layer_name(name)
                    .ok_or_else(|| Refusal::new(code::INVALID_PARAMS, format!("unknown max_spatial_layer '{name}'")))?;
                (layer.is_none(), layer)
            }
            "prefer-audio-track-state" => (!params["subscribed"].as_bool().unwrap_or(true), None),
            other => return Err(Refusal::new(code::METHOD_NOT_FOUND, format!("unknown method '{other}'"))),
        };
        let sub = self
            .peers
            .get_mut(peer_id)
            .and_then(|p| p.subscribe.as_mut())
            .ok_or_else(|| Refusal::new(code::NOT_FOUND, "track not found"))?;
        let s = sub.tracks.get_mut(track_id).ok_or_else(|| Refusal::new(code::NOT_FOUND, "track not found"))?;
        let consumer = s.consumer.id;
        if method == "prefer-video-track-state" {
            s.asked = true;
        }
        if let Some(layer) = layer {
            // Before resuming, so the consumer restarts on the asked-for layer.
            self.hub.router.set_preferred_layer(consumer, layer).await?;
        }
        if s.paused != pause {
            s.paused = pause;
            self.hub.router.pause_consumer(consumer, pause).await?;
        }
        debug!(peer = %peer_id, track = %track_id, pause, ?layer, "subscription preference applied");
        Ok(())
    }
}

/// The video codecs a role's peers are answered with, in order: the role's
/// `publishParams.video.codec` first (the 100ms SDK never sets codec preferences itself, so
/// the answer is where the template's choice takes effect), then the deployment's order. An
/// unknown or non-video name keeps the deployment's order.
fn video_codecs_for(role: &Role) -> Vec<Codec> {
    let mut order = PublishPolicy::default().video_codecs;
    let wanted = Codec::from_encoding_name(&role.publish_params.video.codec).filter(|c| c.is_video());
    if let Some(i) = wanted.and_then(|c| order.iter().position(|&o| o == c)) {
        let c = order.remove(i);
        order.insert(0, c);
    }
    order
}

/// An offer is taken whole or not at all: an m-line the role may not publish, or one with no
/// codec the router forwards, refuses it with the reason (a partial answer would leave the
/// client believing it publishes a track nobody receives).
fn refuse_rejected(answer: &crate::sdp::PublishAnswer, role: &str) -> Result<(), Refusal> {
    for r in &answer.rejected {
        match r.reason {
            RejectReason::NotAllowed(_) => {
                return Err(Refusal::new(
                    code::FORBIDDEN,
                    format!("role '{role}' may not publish this track (m-line mid {}): {}", r.mid, r.reason),
                ));
            }
            RejectReason::NoUsableCodec => {
                return Err(Refusal::new(
                    code::BAD_REQUEST,
                    format!("m-line mid {} has no codec this server forwards (Opus, VP8, H.264, VP9)", r.mid),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn track_map<'a>(tracks: impl Iterator<Item = &'a TrackState>) -> Value {
    let map: serde_json::Map<String, Value> =
        tracks.map(|t| (t.track_id.clone(), serde_json::to_value(t).unwrap_or(Value::Null))).collect();
    Value::Object(map)
}

fn string_param(params: &Value, key: &str, max: usize) -> Result<Option<String>, Refusal> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(Refusal::new(code::TOO_LARGE, format!("{key} longer than {max} bytes"))),
        Some(_) => Err(Refusal::new(code::INVALID_PARAMS, format!("{key} must be a string"))),
    }
}

/// A burst of messages (a peer joining a big room sends the others a notification each, and
/// their answers come back together) writes one snapshot, not one each: the snapshot holds
/// every peer with its last subscribe offer, about 5 KB a peer, and serializing it after every
/// message made joins into a 200-peer room queue for seconds. A crash loses at most this much
/// of the room's latest changes; the peers' SDKs reconnect either way.
const SNAPSHOT_COALESCE: Duration = Duration::from_millis(200);

/// How often an unchanged, non-empty `active-speakers` list is pushed again.
const SPEAKERS_REFRESH: Duration = Duration::from_secs(1);

/// Messages that change nothing the snapshot holds: keep-alives and trickles, and the router's
/// layer and audio level reports (the room only relays those). Data channel messages are
/// track preferences, which pause and resume consumers: those are saved.
fn changes_no_snapshot(msg: &RoomMsg) -> bool {
    match msg {
        RoomMsg::Rpc { msg: Incoming::Request { method, .. } | Incoming::Notify { method, .. }, .. } => {
            method == "ping" || method == "trickle" || method == "analytics"
        }
        RoomMsg::Router(event) => matches!(
            event,
            Event::ConsumerLayersChanged { .. }
                | Event::AudioLevels { .. }
                | Event::LayersNeeded { .. }
                | Event::TransportConnected { .. }
                | Event::DataChannelOpened { .. }
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_recording_survives_in_the_snapshot_and_old_snapshots_still_load() {
        let active = recording::Active {
            recording_id: "rec-1".into(),
            tap: 7,
            tapped: [router_engine::ProducerId(3)].into_iter().collect(),
        };
        let peers: BTreeMap<String, Peer> = BTreeMap::new();
        // The same shape `save` writes.
        let text = json!({ "shard": 0, "session": null, "peers": peers, "recording": Some(&active) }).to_string();
        let back: Snapshot = serde_json::from_str(&text).expect("a snapshot");
        let restored = back.recording.expect("the recording is kept");
        assert_eq!((restored.recording_id.as_str(), restored.tap), ("rec-1", 7));
        assert_eq!(restored.tapped, active.tapped);
        let old: Snapshot =
            serde_json::from_str(r#"{"shard": 0, "session": null, "peers": {}}"#).expect("old snapshot");
        assert!(old.recording.is_none());
    }

    #[test]
    fn the_roles_video_codec_is_preferred_in_the_answer() {
        let mut role = store::role::default_roles().into_values().next().expect("the default template has roles");
        assert_eq!(video_codecs_for(&role), [Codec::Vp8, Codec::H264, Codec::Vp9], "vp8 by default");
        role.publish_params.video.codec = "h264".into();
        assert_eq!(video_codecs_for(&role), [Codec::H264, Codec::Vp8, Codec::Vp9]);
        role.publish_params.video.codec = "opus".into();
        assert_eq!(video_codecs_for(&role), [Codec::Vp8, Codec::H264, Codec::Vp9], "not a video codec");
        role.publish_params.video.codec = "av1".into();
        assert_eq!(video_codecs_for(&role), [Codec::Vp8, Codec::H264, Codec::Vp9], "not one the router forwards");
    }
}
