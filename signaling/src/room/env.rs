//! A room's environment: everything outside itself it uses, owned by the room.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schema::ids::TransportId;
use util::LockExt;

use crate::events::EventSink;
use crate::router_api::RouterApi;

/// Everything outside itself a room uses, built by the hub when it starts the room (and by
/// tests, with an in-memory router).
#[derive(Clone)]
pub struct RoomEnv {
    pub router: Arc<dyn RouterApi>,
    /// Where the room reports what happens in it (`events.rs`).
    pub events: Arc<dyn EventSink>,
    /// The platform database: the room's session cap, and locking on `end-room {lock: true}`;
    /// `None`: `max_session` for every room, and locking is logged and skipped.
    pub store: Option<Arc<Mutex<store::Store>>>,
    /// The longest a session may last (`--max-session-secs`).
    pub max_session: Duration,
    /// Where the room keeps its snapshot (`snapshot.rs`); `None` keeps nothing.
    pub state_dir: Option<PathBuf>,
    /// The compositor's jobs directory, where a peer's timed metadata goes as cue files
    /// (`--compositor-jobs-dir`); `None`: `hls-timed-metadata` is refused.
    pub compositor_jobs_dir: Option<PathBuf>,
    pub hub: HubHandle,
}

impl std::fmt::Debug for RoomEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomEnv")
            .field("max_session", &self.max_session)
            .field("state_dir", &self.state_dir)
            .field("compositor_jobs_dir", &self.compositor_jobs_dir)
            .finish_non_exhaustive()
    }
}

impl RoomEnv {
    /// How long a session of `room_id` may last from its first join; the room ends it then:
    /// the room's `max_duration_seconds` (12 h when unset), at most `max_session`.
    pub fn session_cap(&self, room_id: &str) -> Duration {
        let room_cap = self.store.as_ref().and_then(|s| {
            let s = s.lock_unpoisoned();
            s.room(room_id).ok().flatten().map(|r| r.session_cap())
        });
        room_cap.map_or(self.max_session, |c| c.min(self.max_session))
    }

    /// The room's row, for its size and description; `None` without a database (or if the
    /// room is gone), which leaves the size unlimited.
    pub fn room_record(&self, room_id: &str) -> Option<store::Room> {
        let store = self.store.as_ref()?;
        store.lock_unpoisoned().room(room_id).ok().flatten()
    }

    /// Disables a room in the database (`end-room {lock: true}`): new joins are refused.
    pub fn lock_room(&self, room_id: &str) -> Result<(), String> {
        let Some(store) = &self.store else { return Err("no database to lock the room in".into()) };
        store.lock_unpoisoned().set_room_enabled(room_id, false).map_err(|e| e.to_string())
    }
}

/// The little of the hub a room uses: routing its transports' events to it, and the join
/// latency meter. Rooms hold this, not the [`crate::hub::Hub`], so the hub owns its rooms and
/// not the other way round; the hub keeps a clone to route by.
#[derive(Debug, Clone, Default)]
pub struct HubHandle {
    transports: Arc<Mutex<HashMap<TransportId, String>>>,
    pub(crate) join_latency: Arc<Mutex<schema::histogram::Histogram>>,
}

impl HubHandle {
    /// Router events about `transport` go to `room_id` from now on.
    pub fn register_transport(&self, transport: TransportId, room_id: &str) {
        self.transports.lock_unpoisoned().insert(transport, room_id.to_owned());
    }

    pub fn unregister_transport(&self, transport: TransportId) {
        self.transports.lock_unpoisoned().remove(&transport);
    }

    /// A join's server-side time, for the admin socket's `metrics`.
    pub fn record_join_latency(&self, elapsed: Duration) {
        self.join_latency.lock_unpoisoned().record(elapsed);
    }

    pub(crate) fn room_of(&self, transport: TransportId) -> Option<String> {
        self.transports.lock_unpoisoned().get(&transport).cloned()
    }

    pub(crate) fn transport_count(&self) -> usize {
        self.transports.lock_unpoisoned().len()
    }
}
