//! The control daemon's operations on a room (the admin socket's `active_room`,
//! `update_peer`, `send_message`, `remove_peers`, `end_room`, recordings), and the removals
//! they share with the client flows: a peer kicked, the room ended, a peer gone.

use std::time::SystemTime;

use schema::ids::TransportId;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::peer::{Peer, Published};
use super::{MAX_DATA, MAX_NAME, Refusal, Room};
use crate::events::{EventTrack, LeaveReason, RoomEvent};
use crate::rpc;

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
    StartRecording { recording_id: String, tap: u32, reader: schema::tap::TapReader },
    /// Ends the taps of a job (`None`: of every job in the room).
    StopRecording { recording_id: Option<String> },
    /// The recorder waits for a keyframe of a tapped track: the router asks its publisher.
    RequestKeyframe { recording_id: String, track_id: String },
    /// A job of the room changed state: its peers are told (`room/jobs.rs`).
    JobState(super::JobState),
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

impl Room {
    pub(super) async fn admin(&mut self, op: AdminOp) -> Result<Value, AdminError> {
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
                // Before anything changes: a full role refuses the whole update.
                if let Some(r) = &role
                    && self.peers.get(&peer_id).is_some_and(|p| &p.role != r)
                {
                    self.check_role_capacity(&peer_id, r)?;
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
                    self.apply_role_change(&peer_id, &r, None).await?;
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
                    "message_id": store::new_id(),
                    "timestamp": util::unix_ms(),
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
            AdminOp::StartRecording { recording_id, tap, reader } => {
                self.start_recording(recording_id, tap, reader).await
            }
            AdminOp::RequestKeyframe { recording_id, track_id } => {
                self.request_keyframe(&recording_id, &track_id).await
            }
            AdminOp::StopRecording { recording_id } => self.stop_recording(recording_id).await,
            AdminOp::JobState(job) => {
                let id = job.id.clone();
                self.job_state(job).await;
                Ok(json!({ "job_id": id }))
            }
            AdminOp::EndRoom { reason, lock } => {
                let ended = if reason.is_empty() { "room ended".to_owned() } else { reason.clone() };
                self.end_room(None, &reason, lock, &ended).await;
                Ok(json!({}))
            }
        }
    }

    /// Removes a peer at someone's request: `on-peer-leave-request`, its socket closed, its
    /// media dropped, `on-peer-leave` to the others ("peer kicked").
    pub(super) async fn kick(&mut self, target: &str, by: Option<&str>, reason: &str) {
        let Some(peer) = self.peers.get_mut(target) else { return };
        peer.send_off(by, reason, false);
        self.remove_peer(target, LeaveReason::PeerKicked, reason).await;
    }

    /// Ends the room: everyone but the requester (who leaves by itself after the response)
    /// gets `on-peer-leave-request {room_end: true}` and is removed ("room ended"); the
    /// session closes with `session_reason`; `lock` disables the room in the database.
    pub(super) async fn end_room(&mut self, by: Option<&str>, reason: &str, lock: bool, session_reason: &str) {
        info!(room = %self.id, by = ?by, reason, lock, "ending the room");
        // Locked first, so nobody joins while the others are being removed.
        if lock && let Err(e) = self.env.lock_room(&self.id) {
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

    /// Removes a peer: its transports (the router closes its producers and the consumers of
    /// them), `on-peer-leave` to the others, and their subscribe connections renegotiated.
    pub(super) async fn remove_peer(&mut self, peer_id: &str, reason: LeaveReason, message: &str) {
        let Some(peer) = self.peers.get(peer_id) else { return };
        let was_joined = peer.joined;
        let tracks: Vec<EventTrack> =
            peer.publish.iter().flat_map(|p| p.tracks.values().map(Published::event)).collect();
        self.drop_media(peer_id).await;
        let Some(peer) = self.peers.remove(peer_id) else { return };
        self.role_requests.retain(|_, r| r.target != peer_id);
        info!(room = %self.id, peer = %peer_id, name = %peer.name, %reason, message, "peer left");
        // Decided before the leave is told, so the store keeps the session open as well.
        let empty = !self.ending && self.peers.values().all(|p| !p.joined);
        let linger = if empty && self.session.is_some() { self.job_linger() } else { None };
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
                session_waits: linger.is_some(),
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
            self.push_session_info();
        }
        if empty {
            self.last_peer_left(linger, util::unix_ms());
        }
    }

    // ---- Permissioned requests -------------------------------------------------------

    /// Closes a peer's transports and forgets its tracks, without telling anyone (a repeated
    /// join starts over).
    pub(super) async fn drop_media(&mut self, peer_id: &str) {
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
}
