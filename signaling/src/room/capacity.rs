//! Who else may join: the room's `size` (0 or absent: no cap) and each role's `maxPeerCount`
//! (0: no cap, -1: nobody may be in the role, n: at most n). Checked on every join (SDK and
//! WHIP) and every role change, against the peers joined at that moment; the room actor
//! handles one message at a time, so two joins never both take the last place.
//!
//! A refusal is a 403 whose message names the limit, and a `peer.join.failure` or
//! `role.change.failure` webhook. A peer already in the room (a repeated join, a reconnect)
//! is never counted against itself.

use super::{Refusal, Room};
use crate::events::{EventPeer, RoomEvent};
use crate::rpc::code;

impl Room {
    /// Why `peer_id` may not be in `role` now, or `None`. `joining`: the room's size applies
    /// too (a role change does not change the head count).
    fn capacity_refusal(&self, peer_id: &str, role: &str, joining: bool) -> Option<String> {
        let others = |in_role: bool| {
            self.peers.values().filter(|p| p.joined && p.id != peer_id && (!in_role || p.role == role)).count()
        };
        match self.role(role).and_then(|r| r.max_peer_count) {
            Some(-1) => return Some(format!("role '{role}' may not be joined (its maxPeerCount is -1)")),
            Some(cap) if cap > 0 && others(true) >= cap as usize => {
                return Some(format!("role '{role}' is full: its maxPeerCount is {cap}"));
            }
            _ => {}
        }
        if joining {
            let size = self.env.room_record(&self.id).and_then(|r| r.attrs.get("size").and_then(|v| v.as_u64()));
            if let Some(size) = size.filter(|&n| n > 0)
                && others(false) as u64 >= size
            {
                return Some(format!("the room is full: its size is {size}"));
            }
        }
        None
    }

    /// Refuses a join that would break a limit, with a `peer.join.failure` event.
    pub(super) fn check_join_capacity(&mut self, peer: EventPeer) -> Result<(), Refusal> {
        let Some(message) = self.capacity_refusal(&peer.peer_id, &peer.role, true) else { return Ok(()) };
        tracing::info!(room = %self.id, peer = %peer.peer_id, role = %peer.role, %message, "join refused");
        let room = self.event_room();
        self.emit(RoomEvent::JoinFailed { room, peer, error_message: message.clone() });
        Err(Refusal::new(code::FORBIDDEN, message))
    }

    /// Refuses moving joined peer `peer_id` to `role` if the role is full, with a
    /// `role.change.failure` event.
    pub(super) fn check_role_capacity(&mut self, peer_id: &str, role: &str) -> Result<(), Refusal> {
        let Some(message) = self.capacity_refusal(peer_id, role, false) else { return Ok(()) };
        let Some(peer) = self.peers.get(peer_id).map(|p| p.event()) else { return Ok(()) };
        tracing::info!(room = %self.id, peer = %peer_id, role, %message, "role change refused");
        let room = self.event_room();
        self.emit(RoomEvent::RoleChangeFailed { room, peer, role: role.to_owned(), error_message: message.clone() });
        Err(Refusal::new(code::FORBIDDEN, message))
    }
}
