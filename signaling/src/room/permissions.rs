//! Permissions: the role checks of the permissioned requests (role changes, remote mute,
//! removing a peer, ending the room) and what a role change does.

use std::time::SystemTime;

use serde_json::{Value, json};
use store::role::Permissions;
use tracing::{debug, info};

use super::peer::Peer;
use super::rpc::{
    EndRoomParams, MuteStateRequestParams, Param, PeerLeaveRequestParams, RoleChangeParams, RoleChangeRequestParams,
    TrackUpdateRequestParams, track_map,
};
use super::{Deferred, MAX_NAME, MAX_ROLE_REQUESTS, Refusal, RoleRequest, Room};
use crate::events::RoomEvent;
use crate::protocol::TrackState;
use crate::rpc::{self, code};

impl Room {
    /// The requester's role grants `allowed`; otherwise a 403 naming the permission.
    pub(super) fn require(
        &self,
        peer_id: &str,
        allowed: impl Fn(&Permissions) -> bool,
        name: &str,
    ) -> Result<(), Refusal> {
        let peer = self.requester(peer_id)?;
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

    /// The peer making a request, which must have joined: 409 otherwise.
    pub(super) fn requester(&self, peer_id: &str) -> Result<&Peer, Refusal> {
        self.peers.get(peer_id).filter(|p| p.joined).ok_or_else(|| Refusal::new(code::CONFLICT, "join the room first"))
    }

    /// A joined peer other than nobody: 404 otherwise.
    pub(super) fn joined_peer(&self, peer_id: &str) -> Result<&Peer, Refusal> {
        self.peers
            .get(peer_id)
            .filter(|p| p.joined)
            .ok_or_else(|| Refusal::new(code::NOT_FOUND, format!("peer {peer_id} is not in the room")))
    }

    /// `role-change-request {requested_for, role, force}` or the bulk `{roles, role, force}`
    /// (always applied at once).
    pub(super) async fn role_change_request(
        &mut self,
        peer_id: &str,
        params: RoleChangeRequestParams,
    ) -> Result<Value, Refusal> {
        self.require(peer_id, |p| p.change_role, "changeRole")?;
        let role =
            params.role.valid().ok_or_else(|| Refusal::new(code::BAD_REQUEST, "role-change-request needs role"))?;
        if self.role(&role).is_none() {
            return Err(Refusal::new(code::BAD_REQUEST, format!("unknown role '{role}'")));
        }
        let force = params.force.or_refuse(code::BAD_REQUEST, "force must be a boolean")?.unwrap_or(false);
        if let Some(roles) = params.roles.or_refuse(code::BAD_REQUEST, "roles must be a list of role names")? {
            let targets: Vec<String> = self
                .peers
                .values()
                .filter(|p| p.joined && p.role != role && roles.contains(&p.role))
                .map(|p| p.id.clone())
                .collect();
            // As many as the role has room for; each refused one is a `role.change.failure`.
            let mut refused = 0;
            for t in targets {
                if self.apply_role_change(&t, &role, Some(peer_id)).await.is_err() {
                    refused += 1;
                }
            }
            if refused > 0 {
                return Err(Refusal::new(
                    code::FORBIDDEN,
                    format!("role '{role}' is full: {refused} peer(s) kept their role"),
                ));
            }
            return Ok(json!({}));
        }
        let target = params
            .requested_for
            .valid()
            .ok_or_else(|| Refusal::new(code::BAD_REQUEST, "role-change-request needs requested_for or roles"))?;
        self.joined_peer(&target)?;
        if force {
            self.apply_role_change(&target, &role, Some(peer_id)).await?;
            return Ok(json!({}));
        }
        if self.role_requests.len() >= MAX_ROLE_REQUESTS {
            return Err(Refusal::new(code::CONFLICT, "too many role changes waiting for an answer"));
        }
        let token = store::new_id();
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
    pub(super) async fn role_change_accept(
        &mut self,
        peer_id: &str,
        params: RoleChangeParams,
    ) -> Result<Value, Refusal> {
        let token = params.token.valid().ok_or_else(|| Refusal::new(code::BAD_REQUEST, "role-change needs token"))?;
        let token = token.as_str();
        self.requester(peer_id)?;
        let request = self.role_requests.get(token).filter(|r| r.target == peer_id).ok_or_else(|| {
            Refusal::new(code::FORBIDDEN, "no role change was requested of this peer with this token")
        })?;
        if let Some(role) = params.role.valid()
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
        self.apply_role_change(peer_id, &request.role, Some(&request.requested_by)).await?;
        Ok(json!({}))
    }

    /// Moves a joined peer to `new_role`: its SDK is told first (`on-policy-change`, which
    /// makes it republish for the role), then everyone (`on-peer-update`); tracks the role may
    /// not publish are closed; every subscribe connection follows `subscribeToRoles`.
    /// Refused (and nothing changed) when the role is full.
    pub(super) async fn apply_role_change(
        &mut self,
        peer_id: &str,
        new_role: &str,
        requested_by: Option<&str>,
    ) -> Result<(), Refusal> {
        let Some(role) = self.role(new_role).cloned() else { return Ok(()) };
        if self.peers.get(peer_id).is_none_or(|p| !p.joined || p.role == new_role) {
            return Ok(());
        }
        self.check_role_capacity(peer_id, new_role)?;
        let policy = self.policy_params(new_role);
        let Some(peer) = self.peers.get_mut(peer_id) else { return Ok(()) };
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
            if let Err(e) = self.env.router.close_producer(t.producer).await {
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
        Ok(())
    }

    /// `track-update-request {requested_for, track_id, stream_id, mute}`: asks one peer to mute
    /// (`mute`) or unmute (`unmute`) one of its tracks.
    pub(super) fn track_update_request(
        &mut self,
        peer_id: &str,
        params: TrackUpdateRequestParams,
    ) -> Result<Value, Refusal> {
        let mute = params
            .mute
            .valid()
            .ok_or_else(|| Refusal::new(code::BAD_REQUEST, "track-update-request needs mute: true or false"))?;
        if mute {
            self.require(peer_id, |p| p.mute, "mute")?;
        } else {
            self.require(peer_id, |p| p.unmute, "unmute")?;
        }
        let target = params
            .requested_for
            .valid()
            .ok_or_else(|| Refusal::new(code::BAD_REQUEST, "track-update-request needs requested_for"))?;
        let track_id = params
            .track_id
            .valid()
            .ok_or_else(|| Refusal::new(code::BAD_REQUEST, "track-update-request needs track_id"))?;
        let (target, track_id) = (target.as_str(), track_id.as_str());
        let peer = self.joined_peer(target)?;
        let track = peer
            .publish
            .as_ref()
            .and_then(|p| p.tracks.get(track_id))
            .ok_or_else(|| Refusal::new(code::NOT_FOUND, format!("peer {target} publishes no track {track_id}")))?;
        let stream_id = params.stream_id.valid().unwrap_or_else(|| track.state.stream_id.clone());
        peer.push(
            "on-track-update-request",
            json!({ "requested_by": peer_id, "track_id": track_id, "stream_id": stream_id, "mute": mute }),
        );
        Ok(json!({}))
    }

    /// `change-track-mute-state-request {requested_for?, roles?, type?, source?, value}`: asks
    /// one peer, the peers of some roles, or everyone else, to mute (`value: true`) or unmute
    /// their matching tracks.
    pub(super) fn mute_state_request(
        &mut self,
        peer_id: &str,
        params: MuteStateRequestParams,
    ) -> Result<Value, Refusal> {
        let value = params.value.valid().ok_or_else(|| {
            Refusal::new(code::BAD_REQUEST, "change-track-mute-state-request needs value: true or false")
        })?;
        if value {
            self.require(peer_id, |p| p.mute, "mute")?;
        } else {
            self.require(peer_id, |p| p.unmute, "unmute")?;
        }
        let kind = match params.kind {
            Param::Absent => None,
            Param::Valid(t) if t == "audio" || t == "video" => Some(t),
            Param::Valid(_) | Param::Invalid(_) => {
                return Err(Refusal::new(code::BAD_REQUEST, "type must be \"audio\" or \"video\""));
            }
        };
        let source = params.source.or_refuse(code::BAD_REQUEST, "source must be a string")?;
        let roles = params.roles.or_refuse(code::BAD_REQUEST, "roles must be a list of role names")?;
        let target = params.requested_for.valid();
        let target = target.as_deref();
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
    pub(super) fn peer_leave_request(
        &mut self,
        peer_id: &str,
        params: PeerLeaveRequestParams,
    ) -> Result<Value, Refusal> {
        self.require(peer_id, |p| p.remove_others, "removeOthers")?;
        let target = params
            .requested_for
            .valid()
            .ok_or_else(|| Refusal::new(code::BAD_REQUEST, "peer-leave-request needs requested_for"))?;
        let reason = params
            .reason
            .text("reason", MAX_NAME)
            .map_err(|r| Refusal::new(code::BAD_REQUEST, r.message))?
            .unwrap_or_default();
        self.joined_peer(&target)?;
        self.deferred.push(Deferred::Kick { target, by: peer_id.to_owned(), reason });
        Ok(json!({}))
    }

    /// `end-room {lock, reason}`: ends the session for everyone (after the response).
    pub(super) fn end_room_request(&mut self, peer_id: &str, params: EndRoomParams) -> Result<Value, Refusal> {
        self.require(peer_id, |p| p.end_room, "endRoom")?;
        let lock = params.lock.or_refuse(code::BAD_REQUEST, "lock must be a boolean")?.unwrap_or(false);
        let reason = params
            .reason
            .text("reason", MAX_NAME)
            .map_err(|r| Refusal::new(code::BAD_REQUEST, r.message))?
            .unwrap_or_default();
        self.deferred.push(Deferred::EndRoom { by: peer_id.to_owned(), reason, lock });
        Ok(json!({}))
    }
}
