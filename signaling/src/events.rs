//! What happens in rooms, as events for the control daemon's sessions and webhooks.
//!
//! Each room actor (`room/`) reports every change that a 100ms webhook or the session API
//! describes: a session opening and closing, peers joining, leaving (with the 100ms reason
//! vocabulary), being updated or changing role, tracks added, updated and removed. Events
//! carry everything a webhook body needs, so a sink never has to ask the room back.
//!
//! The room hands each event to the hub's [`EventSink`] and awaits it before it handles its
//! next message, so an event is durable (for a sink that writes a database) before the room
//! moves on. A sink's failure is logged by the room; it never stops the room.
//!
//! ```
//! use signaling::events::{EventSink, RecordingSink, RoomEvent, EventRoom};
//! let sink = RecordingSink::default();
//! let room = EventRoom { room_id: "r".into(), room_name: "standup".into(), template_id: "t".into(), session_id: "s".into() };
//! let ev = RoomEvent::SessionEnded { room, started_at: std::time::UNIX_EPOCH, ended_at: std::time::UNIX_EPOCH,
//!     reason: "last peer left".into(), ended_by: None, lock: false };
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! sink.record(ev).await.unwrap();
//! # });
//! assert_eq!(sink.events().len(), 1);
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use tracing::info;
use util::LockExt;

/// The room (and its current session) an event happened in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRoom {
    /// The database room id.
    pub room_id: String,
    pub room_name: String,
    pub template_id: String,
    /// The session (one continuous call) the event belongs to.
    pub session_id: String,
}

/// A peer and a published track as the webhooks describe them: the store's records, so what
/// signaling reports is what the store writes.
pub use store::session::{PeerRecord as EventPeer, TrackRecord as EventTrack};

/// `SessionEnded.reason` when the last peer left (not an explicit end).
pub const LAST_PEER_LEFT: &str = "last peer left";
/// `SessionEnded.reason` when the session reached its cap.
pub const MAX_DURATION_REACHED: &str = "max duration reached";

/// Why a peer left, in the 100ms `peer.leave.success` vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LeaveReason {
    /// The client sent `leave`.
    #[serde(rename = "client request")]
    ClientRequest,
    /// Removed by another peer (`peer-leave-request`) or the API (`remove_peers`); the
    /// removal reason is the event's `message`.
    #[serde(rename = "peer kicked")]
    PeerKicked,
    /// The socket closed and the peer did not come back within the 60 s grace.
    #[serde(rename = "websocket closed")]
    WebsocketClosed,
    /// The server removed it (its media connection failed, the server shut down).
    #[serde(rename = "server removed peer")]
    ServerRemovedPeer,
    /// The room was ended (by a peer, the API, or the session cap).
    #[serde(rename = "room ended")]
    RoomEnded,
}

impl LeaveReason {
    /// The webhook's `reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::ClientRequest => "client request",
            LeaveReason::PeerKicked => "peer kicked",
            LeaveReason::WebsocketClosed => "websocket closed",
            LeaveReason::ServerRemovedPeer => "server removed peer",
            LeaveReason::RoomEnded => "room ended",
        }
    }
}

impl std::fmt::Display for LeaveReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing that happened in a room.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RoomEvent {
    /// The first peer joined: a session opened (`session.open.success`).
    SessionStarted { room: EventRoom, started_at: SystemTime },
    /// `peer.join.success`.
    PeerJoined { room: EventRoom, peer: EventPeer },
    /// `peer.leave.success`: `message` is the removal reason for a kick or an end-room
    /// (empty otherwise).
    /// `session_waits`: the peer was the last, and the session stays open for the room's jobs
    /// (`autoStopTimeout`) until a `SessionEnded`.
    PeerLeft {
        room: EventRoom,
        peer: EventPeer,
        left_at: SystemTime,
        reason: LeaveReason,
        message: String,
        session_waits: bool,
    },
    /// `track.add.success`.
    TrackAdded { room: EventRoom, peer: EventPeer, track: EventTrack },
    /// `track.update.success` (mute or description changed).
    TrackUpdated { room: EventRoom, peer: EventPeer, track: EventTrack },
    /// `track.remove.success`: unpublished, stopped by a role change, or its peer left.
    TrackRemoved { room: EventRoom, peer: EventPeer, track: EventTrack, stopped_at: SystemTime },
    /// `role.change.success`. `peer.role` is the new role; `requested_by` is the peer id of
    /// whoever asked, `None` when the change came through the API.
    RoleChanged {
        room: EventRoom,
        peer: EventPeer,
        previous_role: String,
        role: String,
        requested_by: Option<String>,
        changed_at: SystemTime,
    },
    /// `peer.join.failure`: a join refused because the room or the role is full.
    JoinFailed { room: EventRoom, peer: EventPeer, error_message: String },
    /// `role.change.failure`: a role change refused because the new role is full. `peer.role`
    /// is the role kept; `role` the one refused.
    RoleChangeFailed { room: EventRoom, peer: EventPeer, role: String, error_message: String },
    /// The peer's name or metadata changed (by itself or through the API).
    PeerUpdated { room: EventRoom, peer: EventPeer, name: String, metadata: String },
    /// `session.close.success` (and `room.end.success` when `ended_by` or `reason` says the room
    /// was ended). `reason`: "last peer left", the end-room reason, or "max duration reached".
    /// `ended_by`: the peer id that ended the room (`None`: the API, the cap, or the last
    /// leave). `lock`: the room was also disabled.
    SessionEnded {
        room: EventRoom,
        started_at: SystemTime,
        ended_at: SystemTime,
        reason: String,
        ended_by: Option<String>,
        lock: bool,
    },
}

impl RoomEvent {
    /// The room the event happened in.
    pub fn room(&self) -> &EventRoom {
        match self {
            RoomEvent::SessionStarted { room, .. }
            | RoomEvent::PeerJoined { room, .. }
            | RoomEvent::PeerLeft { room, .. }
            | RoomEvent::TrackAdded { room, .. }
            | RoomEvent::TrackUpdated { room, .. }
            | RoomEvent::TrackRemoved { room, .. }
            | RoomEvent::RoleChanged { room, .. }
            | RoomEvent::PeerUpdated { room, .. }
            | RoomEvent::JoinFailed { room, .. }
            | RoomEvent::RoleChangeFailed { room, .. }
            | RoomEvent::SessionEnded { room, .. } => room,
        }
    }

    /// The short name used in logs ("peer_left", ...).
    pub fn name(&self) -> &'static str {
        match self {
            RoomEvent::SessionStarted { .. } => "session_started",
            RoomEvent::PeerJoined { .. } => "peer_joined",
            RoomEvent::PeerLeft { .. } => "peer_left",
            RoomEvent::TrackAdded { .. } => "track_added",
            RoomEvent::TrackUpdated { .. } => "track_updated",
            RoomEvent::TrackRemoved { .. } => "track_removed",
            RoomEvent::RoleChanged { .. } => "role_changed",
            RoomEvent::PeerUpdated { .. } => "peer_updated",
            RoomEvent::JoinFailed { .. } => "join_failed",
            RoomEvent::RoleChangeFailed { .. } => "role_change_failed",
            RoomEvent::SessionEnded { .. } => "session_ended",
        }
    }
}

/// What [`EventSink::record`] returns: a boxed future, so the sink can be a trait object.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Where room events go. The room awaits `record` before handling its next message; an
/// `Err` is logged, never retried by the room (a sink that wants retries does them itself).
pub trait EventSink: Send + Sync {
    fn record(&self, event: RoomEvent) -> SinkFuture<'_>;
}

/// The default sink: a log line per event.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSink;

impl EventSink for LogSink {
    fn record(&self, event: RoomEvent) -> SinkFuture<'_> {
        Box::pin(async move {
            info!(event = event.name(), room = %event.room().room_id, session = %event.room().session_id, "room event");
            Ok(())
        })
    }
}

/// A sink that keeps every event in memory (tests, and a reference for real sinks).
#[derive(Debug, Default)]
pub struct RecordingSink {
    events: Mutex<Vec<RoomEvent>>,
}

impl RecordingSink {
    /// Every event recorded so far, in order.
    pub fn events(&self) -> Vec<RoomEvent> {
        self.events.lock_unpoisoned().clone()
    }
}

impl EventSink for RecordingSink {
    fn record(&self, event: RoomEvent) -> SinkFuture<'_> {
        self.events.lock_unpoisoned().push(event);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leave_reasons_serialize_to_the_100ms_vocabulary() {
        for (r, s) in [
            (LeaveReason::ClientRequest, "client request"),
            (LeaveReason::PeerKicked, "peer kicked"),
            (LeaveReason::WebsocketClosed, "websocket closed"),
            (LeaveReason::ServerRemovedPeer, "server removed peer"),
            (LeaveReason::RoomEnded, "room ended"),
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), s);
            assert_eq!(r.as_str(), s);
        }
    }

    #[test]
    fn events_serialize_with_a_tag_and_the_track_type() {
        let room =
            EventRoom { room_id: "r".into(), room_name: "n".into(), template_id: "t".into(), session_id: "s".into() };
        let peer = EventPeer {
            peer_id: "p".into(),
            user_id: "u".into(),
            name: "Ann".into(),
            metadata: "".into(),
            role: "host".into(),
            joined_at: SystemTime::UNIX_EPOCH,
        };
        let track = EventTrack {
            track_id: "t1".into(),
            stream_id: "s1".into(),
            kind: "audio".into(),
            source: "regular".into(),
            mute: false,
            started_at: SystemTime::UNIX_EPOCH,
        };
        let v = serde_json::to_value(RoomEvent::TrackAdded { room, peer, track }).unwrap();
        assert_eq!(v["event"], "track_added");
        assert_eq!(v["track"]["type"], "audio");
    }
}
