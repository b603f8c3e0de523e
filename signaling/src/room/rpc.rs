//! The client's JSON-RPC requests and notifies: their params, each decoded once by serde into
//! a typed struct, and the dispatch to the flows (`negotiate.rs`, `permissions.rs`, ...). The
//! simple requests (peer-update, broadcast, track-update) are handled here.
//!
//! Decoding never fails: each field is a [`Param`], which keeps a field of the wrong type
//! apart from a missing one, so every method still answers each bad field with its own code
//! and message, exactly as the SDK has always seen them.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};
use tracing::{debug, info};

use super::{Deferred, MAX_DATA, MAX_NAME, Refusal, Room};
use crate::events::{LeaveReason, RoomEvent};
use crate::protocol::TrackState;
use crate::rpc::{self, Incoming, code};

/// One field of a client's params: absent (or `null`), of the expected type, or present with
/// another type (with serde's reason).
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) enum Param<T> {
    #[default]
    Absent,
    Valid(T),
    Invalid(String),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Param<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Param<T>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Null => Param::Absent,
            v => serde_json::from_value(v).map_or_else(|e| Param::Invalid(e.to_string()), Param::Valid),
        })
    }
}

impl<T> Param<T> {
    /// The value if it has the expected type; a field of another type counts as absent (the
    /// SDK's optional fields were always read that way).
    pub(super) fn valid(self) -> Option<T> {
        match self {
            Param::Valid(v) => Some(v),
            Param::Absent | Param::Invalid(_) => None,
        }
    }

    /// The value, `None` when absent, refused with `code` and `message` when of another type.
    pub(super) fn or_refuse(self, code: i64, message: &str) -> Result<Option<T>, Refusal> {
        match self {
            Param::Absent => Ok(None),
            Param::Valid(v) => Ok(Some(v)),
            Param::Invalid(_) => Err(Refusal::new(code, message)),
        }
    }
}

impl Param<String> {
    /// A text field of at most `max` bytes: too long is 413, not a string is -32602.
    pub(super) fn text(self, key: &str, max: usize) -> Result<Option<String>, Refusal> {
        match self {
            Param::Absent => Ok(None),
            Param::Valid(s) if s.len() <= max => Ok(Some(s)),
            Param::Valid(_) => Err(Refusal::new(code::TOO_LARGE, format!("{key} longer than {max} bytes"))),
            Param::Invalid(_) => Err(Refusal::new(code::INVALID_PARAMS, format!("{key} must be a string"))),
        }
    }
}

/// Decodes a method's params; params that are not an object have none of the fields.
pub(super) fn decode<P: DeserializeOwned + Default>(params: Value) -> P {
    if !params.is_object() {
        return P::default();
    }
    serde_json::from_value(params).unwrap_or_default()
}

/// A session description (`{"type": ..., "sdp": ...}`); only the SDP is read.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Desc {
    pub sdp: String,
}

/// `join {offer, name, data, disableVidAutoSub}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JoinParams {
    pub offer: Param<Desc>,
    pub name: Param<String>,
    pub data: Param<String>,
    #[serde(rename = "disableVidAutoSub")]
    pub disable_vid_auto_sub: Param<bool>,
}

/// `offer {desc, tracks}`: a publish renegotiation.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct OfferParams {
    pub desc: Param<Desc>,
    pub tracks: Param<BTreeMap<String, TrackState>>,
}

/// `answer {desc}`: the answer to our subscribe offer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct AnswerParams {
    pub desc: Param<Desc>,
}

/// `track-update {tracks}`: the peer's own tracks muted, unmuted or described.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct TrackUpdateParams {
    pub tracks: Param<BTreeMap<String, TrackState>>,
}

/// `leave {client_reason}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LeaveParams {
    pub client_reason: Param<String>,
}

/// `peer-update {name, data}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct PeerUpdateParams {
    pub name: Param<String>,
    pub data: Param<String>,
}

/// `broadcast {info, roles, peer_id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct BroadcastParams {
    pub info: Param<Map<String, Value>>,
    pub roles: Param<Vec<String>>,
    pub peer_id: Param<String>,
}

/// `role-change-request {requested_for, role, force}` or `{roles, role, force}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RoleChangeRequestParams {
    pub role: Param<String>,
    pub force: Param<bool>,
    pub roles: Param<Vec<String>>,
    pub requested_for: Param<String>,
}

/// `role-change {requested_by, role, token}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RoleChangeParams {
    pub token: Param<String>,
    pub role: Param<String>,
}

/// `track-update-request {requested_for, track_id, stream_id, mute}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct TrackUpdateRequestParams {
    pub mute: Param<bool>,
    pub requested_for: Param<String>,
    pub track_id: Param<String>,
    pub stream_id: Param<String>,
}

/// `change-track-mute-state-request {requested_for, roles, type, source, value}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct MuteStateRequestParams {
    pub value: Param<bool>,
    #[serde(rename = "type")]
    pub kind: Param<String>,
    pub source: Param<String>,
    pub roles: Param<Vec<String>>,
    pub requested_for: Param<String>,
}

/// `peer-leave-request {requested_for, reason}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct PeerLeaveRequestParams {
    pub requested_for: Param<String>,
    pub reason: Param<String>,
}

/// `end-room {lock, reason}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct EndRoomParams {
    pub lock: Param<bool>,
    pub reason: Param<String>,
}

/// `prefer-video-track-state {track_id, max_spatial_layer}` and
/// `prefer-audio-track-state {track_id, subscribed}` (on the `ion-sfu` data channel).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct TrackPreferenceParams {
    pub track_id: Param<String>,
    pub max_spatial_layer: Param<String>,
    pub subscribed: Param<bool>,
}

impl Room {
    pub(super) async fn rpc(&mut self, peer_id: &str, msg: Incoming, received: Instant) {
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
                    self.env.hub.record_join_latency(received.elapsed());
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

    pub(super) async fn request(&mut self, peer_id: &str, method: &str, params: Value) -> Result<Value, Refusal> {
        match method {
            "ping" => Ok(json!({ "timestamp": util::unix_ms() })),
            "join" => self.join(peer_id, decode(params)).await,
            "offer" => self.publish_offer(peer_id, decode(params)).await,
            "peer-update" => {
                let name_before = self.peers.get(peer_id).map(|p| p.name.clone());
                let updated = self.peer_update(peer_id, decode(params));
                // Only a new name matters to the composite (metadata changes are frequent:
                // raised hands), and each retap asks the publisher for a keyframe.
                if updated.is_ok() && self.peers.get(peer_id).map(|p| p.name.clone()) != name_before {
                    self.retap_peer(peer_id).await;
                }
                updated
            }
            "broadcast" => self.broadcast(peer_id, decode(params)),
            "role-change-request" => self.role_change_request(peer_id, decode(params)).await,
            "role-change" => self.role_change_accept(peer_id, decode(params)).await,
            "track-update-request" => self.track_update_request(peer_id, decode(params)),
            "change-track-mute-state-request" => self.mute_state_request(peer_id, decode(params)),
            "peer-leave-request" => self.peer_leave_request(peer_id, decode(params)),
            "end-room" => self.end_room_request(peer_id, decode(params)),
            "rtmp-start" => self.rtmp_start(peer_id, decode(params)),
            "rtmp-stop" => self.rtmp_stop(peer_id).await,
            "hls-start" => self.hls_start(peer_id, decode(params)),
            "hls-stop" => self.hls_stop(peer_id).await,
            "hls-timed-metadata" => self.hls_timed_metadata(peer_id, decode(params)),
            "set-metadata" => self.set_metadata(peer_id, decode(params)),
            "get-metadata" => self.get_metadata(peer_id, decode(params)),
            "listen-metadata-change" => self.listen_metadata_change(peer_id, decode(params)),
            "group-join" => self.change_group(peer_id, decode(params), true, false),
            "group-leave" => self.change_group(peer_id, decode(params), false, false),
            "group-add" => self.change_group(peer_id, decode(params), true, true),
            "group-remove" => self.change_group(peer_id, decode(params), false, true),
            "get-peer" => self.get_peer(peer_id, decode(params)),
            "find-peer" => self.find_peer(peer_id, decode(params)),
            "peer-iter-next" => self.peer_iter_next(peer_id, decode(params)),
            "peer-name-search" => self.peer_name_search(peer_id, decode(params)),
            "poll-info-set" => self.poll_info_set(peer_id, params),
            "poll-info-get" => self.poll_info_get(peer_id, decode(params)),
            "poll-questions-set" => self.poll_questions_set(peer_id, decode(params)),
            "poll-questions-get" => self.poll_questions_get(peer_id, decode(params)),
            "poll-start" => self.poll_move(peer_id, decode(params), true),
            "poll-stop" => self.poll_move(peer_id, decode(params), false),
            "poll-response" => self.poll_response(peer_id, decode(params)),
            "poll-list" => self.poll_list(peer_id, decode(params)),
            "poll-responses" => self.poll_responses(peer_id, decode(params)),
            "poll-result" => self.poll_result(peer_id, decode(params)),
            "poll-leaderboard" => self.poll_leaderboard(peer_id, decode(params)),
            // A whiteboard is a collaborative service of its own, and transcription needs a
            // speech model: neither runs here (docs/prebuilt.md). A 4xx, so the SDK does not
            // retry.
            "transcription-start"
            | "transcription-stop"
            | "transcription-config-update"
            | "whiteboard-create"
            | "whiteboard-get" => Err(Refusal::new(
                code::NOT_IMPLEMENTED,
                format!("'{method}' is not supported by this server (no whiteboard service, no speech model)"),
            )),
            other => Err(Refusal::new(code::METHOD_NOT_FOUND, format!("unknown method '{other}'"))),
        }
    }

    pub(super) async fn notify(&mut self, peer_id: &str, method: &str, params: Value) {
        match method {
            "answer" => self.subscribe_answer(peer_id, decode(params)).await,
            "track-update" => {
                if self.track_update(peer_id, decode(params)) {
                    self.retap_peer(peer_id).await;
                }
            }
            "leave" => {
                let params: LeaveParams = decode(params);
                let reason = params.client_reason.valid().unwrap_or_else(|| "leave".to_owned());
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

    /// Returns whether a track's state changed.
    pub(super) fn track_update(&mut self, peer_id: &str, params: TrackUpdateParams) -> bool {
        let Some(tracks) = params.tracks.valid() else {
            if let Some(p) = self.peers.get(peer_id) {
                p.push(
                    "on-warning",
                    json!({ "code": code::BAD_REQUEST, "message": "track-update needs a tracks map" }),
                );
            }
            return false;
        };
        let Some(peer) = self.peers.get_mut(peer_id) else { return false };
        let Some(publish) = peer.publish.as_mut() else { return false };
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
            return false;
        }
        let brief = peer.info().brief();
        let event_peer = peer.event();
        let room = self.event_room();
        for track in events {
            self.emit(RoomEvent::TrackUpdated { room: room.clone(), peer: event_peer.clone(), track });
        }
        self.push_others(peer_id, "on-track-update", &json!({ "peer": brief, "tracks": track_map(changed.iter()) }));
        true
    }

    pub(super) fn peer_update(&mut self, peer_id: &str, params: PeerUpdateParams) -> Result<Value, Refusal> {
        let name = params.name.text("name", MAX_NAME)?;
        let data = params.data.text("data", MAX_DATA)?;
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

    pub(super) fn broadcast(&mut self, peer_id: &str, params: BroadcastParams) -> Result<Value, Refusal> {
        let info = params.info.valid().map(Value::Object).ok_or_else(|| {
            Refusal::new(code::INVALID_PARAMS, "broadcast needs info: {\"message\": ..., \"type\": ...}")
        })?;
        if info.to_string().len() > MAX_DATA {
            return Err(Refusal::new(code::TOO_LARGE, format!("message longer than {MAX_DATA} bytes")));
        }
        let Some(sender) = self.peers.get(peer_id).filter(|p| p.joined) else {
            return Err(Refusal::new(code::CONFLICT, "broadcast before join"));
        };
        let roles = params.roles.or_refuse(code::INVALID_PARAMS, "roles must be a list of role names")?;
        let to_peer = params.peer_id.valid();
        if let Some(target) = &to_peer
            && !self.peers.get(target).is_some_and(|p| p.joined)
        {
            return Err(Refusal::new(code::NOT_FOUND, format!("peer {target} is not in the room")));
        }
        let message_id = store::new_id();
        let timestamp = util::unix_ms();
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
}

/// A `tracks` map of track states, keyed by track id, as notifications carry it.
pub(super) fn track_map<'a>(tracks: impl Iterator<Item = &'a TrackState>) -> Value {
    let map: serde_json::Map<String, Value> =
        tracks.map(|t| (t.track_id.clone(), serde_json::to_value(t).unwrap_or(Value::Null))).collect();
    Value::Object(map)
}
