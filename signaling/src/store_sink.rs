//! The event sink the signaling process runs with: each room event becomes a
//! [`store::session::Activity`] written to the platform database, where the session tables and
//! the webhook outbox change in one transaction (control delivers the webhooks).
//!
//! The room awaits [`EventSink::record`], so an event is committed before the room handles its
//! next message; the SQLite write runs on the blocking pool, off the async threads.

use std::path::Path;
use std::sync::{Arc, Mutex};

use store::session::Activity;
use util::LockExt;

use crate::events::{EventSink, LAST_PEER_LEFT, MAX_DURATION_REACHED, RoomEvent, SinkFuture};

/// Writes room events to the database.
#[derive(Debug, Clone)]
pub struct StoreSink {
    store: Arc<Mutex<store::Store>>,
}

impl StoreSink {
    /// Opens its own connection to the SQLite database at `path`.
    pub fn open(path: &Path) -> Result<StoreSink, store::StoreError> {
        Ok(StoreSink { store: Arc::new(Mutex::new(store::Store::open(path)?)) })
    }

    /// Opens its own connection to the database at `location` (a file path or a PostgreSQL
    /// URL; see [`store::Store::connect`]).
    pub fn connect(location: &str) -> Result<StoreSink, store::StoreError> {
        Ok(StoreSink { store: Arc::new(Mutex::new(store::Store::connect(location)?)) })
    }
}

/// The activity an event stands for, with the time it happened; `None` for events the store
/// derives itself (a session opens with its first join).
pub fn activity(event: RoomEvent) -> Option<(String, String, Activity, std::time::SystemTime)> {
    let now = std::time::SystemTime::now();
    let (room, activity, at) = match event {
        RoomEvent::SessionStarted { .. } => return None,
        RoomEvent::PeerJoined { room, peer } => {
            let at = peer.joined_at;
            (room, Activity::PeerJoined { peer }, at)
        }
        RoomEvent::PeerLeft { room, peer, left_at, reason, message, session_waits } => {
            (room, Activity::PeerLeft { peer, reason: reason.as_str().to_owned(), message, session_waits }, left_at)
        }
        RoomEvent::TrackAdded { room, peer, track } => (room, Activity::TrackAdded { peer, track }, now),
        RoomEvent::TrackUpdated { room, peer, track } => (room, Activity::TrackUpdated { peer, track }, now),
        RoomEvent::TrackRemoved { room, peer, track, stopped_at } => {
            (room, Activity::TrackRemoved { peer, track }, stopped_at)
        }
        RoomEvent::RoleChanged { room, mut peer, previous_role, role, requested_by, changed_at } => {
            peer.role = role;
            (room, Activity::RoleChanged { peer, previous_role, requested_by }, changed_at)
        }
        RoomEvent::PeerUpdated { room, mut peer, name, metadata } => {
            peer.name = name;
            peer.metadata = metadata;
            (room, Activity::PeerUpdated { peer }, now)
        }
        RoomEvent::JoinFailed { room, peer, error_message } => {
            (room, Activity::JoinFailed { peer, error_message }, now)
        }
        RoomEvent::RoleChangeFailed { room, peer, role, error_message } => {
            (room, Activity::RoleChangeFailed { peer, role, error_message }, now)
        }
        RoomEvent::SessionEnded { room, ended_at, reason, ended_by, lock, .. } => {
            let explicit = reason != LAST_PEER_LEFT && reason != MAX_DURATION_REACHED;
            (room, Activity::SessionEnded { reason, ended_by, lock, explicit }, ended_at)
        }
    };
    Some((room.room_id, room.session_id, activity, at))
}

impl EventSink for StoreSink {
    fn record(&self, event: RoomEvent) -> SinkFuture<'_> {
        let store = self.store.clone();
        Box::pin(async move {
            let Some((room_id, session_id, activity, at)) = activity(event) else { return Ok(()) };
            tokio::task::spawn_blocking(move || {
                let store = store.lock_unpoisoned();
                store
                    .record_activity_in(&room_id, Some(&session_id), &activity, at)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| format!("store task: {e}"))?
        })
    }
}
