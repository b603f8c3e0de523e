//! What peers are told about the room as a whole (100ms's `room-info`, `session-info`,
//! `room-state`).
//!
//! - `room-info {room_id, name, description, max_size, large_room_optimization}` to a peer
//!   when it joins, from the room's row (its `description`, `size` and `large_room`).
//! - `session-info {session_id, room_id, peer_count, track_count}` to every joined peer
//!   whenever the head count changes: the SDK's peer count (`ROOM_PEER_COUNT_UPDATED`),
//!   which a large room's UI shows instead of counting the peers it holds.
//! - `room-state {peer_count, room, peers?}` to a peer that has opened its socket but not
//!   joined (the SDK's preview) when it attaches and every [`ROOM_STATE_EVERY`] after, so a
//!   preview screen shows who is in the room. The peers themselves only go to a role with
//!   `sendRoomState`; the count goes to all.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Room;

/// How often a previewing peer gets a fresh `room-state`.
pub(super) const ROOM_STATE_EVERY: Duration = Duration::from_secs(5);

impl Room {
    fn joined_count(&self) -> usize {
        self.peers.values().filter(|p| p.joined).count()
    }

    pub(super) fn room_info(&self) -> Value {
        let record = self.env.room_record(&self.id);
        let attr = |key: &str| record.as_ref().and_then(|r| r.attrs.get(key).cloned());
        json!({
            "room_id": self.id,
            "name": self.name,
            "description": attr("description").unwrap_or_else(|| json!("")),
            "max_size": attr("size").unwrap_or_else(|| json!(0)),
            "large_room_optimization": attr("large_room").unwrap_or(Value::Bool(false)),
        })
    }

    /// Tells every joined peer the session's head and track counts (nothing outside a
    /// session).
    pub(super) fn push_session_info(&self) {
        let Some((session_id, _)) = &self.session else { return };
        let track_count: usize = self.peers.values().filter(|p| p.joined).map(|p| p.tracks().count()).sum();
        self.push_all(
            "session-info",
            &json!({
                "session_id": session_id,
                "room_id": self.id,
                "peer_count": self.joined_count(),
                "track_count": track_count,
            }),
        );
    }

    /// The `room-state` a previewing peer in `role` gets.
    pub(super) fn room_state_for(&self, role: &str) -> Value {
        let mut state = json!({ "peer_count": self.joined_count(), "room": self.room_state() });
        let may_see = self.role(role).is_some_and(|r| r.permissions.send_room_state.unwrap_or(false));
        if may_see {
            let peers: serde_json::Map<String, Value> =
                self.peers.values().filter(|p| p.joined).map(|p| (p.id.clone(), p.notification())).collect();
            state["peers"] = Value::Object(peers);
        }
        state
    }

    /// Every [`ROOM_STATE_EVERY`], a fresh `room-state` to each peer still in preview.
    pub(super) fn refresh_previews(&mut self, now: Instant) {
        if self.room_state_at.is_some_and(|at| now.duration_since(at) < ROOM_STATE_EVERY) {
            return;
        }
        self.room_state_at = Some(now);
        let mut by_role: std::collections::HashMap<&str, String> = Default::default();
        for p in self.peers.values().filter(|p| !p.joined && p.out.is_some()) {
            let text = by_role
                .entry(p.role.as_str())
                .or_insert_with(|| crate::rpc::push("room-state", self.room_state_for(&p.role)));
            p.send(text.clone());
        }
    }
}
