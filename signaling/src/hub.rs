//! The rooms of this signaling process: one actor per room ([`crate::room`]), created on the
//! first socket for it, and the routing of router events to the room that owns the transport.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};
use util::LockExt;

use schema::RouterEvent;
use schema::api::Event;
use schema::ids::TransportId;

use crate::events::{EventSink, LogSink};
pub use crate::room::HubHandle;
use crate::room::{Room, RoomEnv, RoomMsg};
use crate::router_link::RouterLink;

/// Every room, and which room each router transport belongs to.
pub struct Hub {
    /// The router link; each room gets it as its [`crate::router_api::RouterApi`].
    pub router: Arc<RouterLink>,
    /// Where rooms keep their snapshots (see `room/snapshot.rs`); `None` keeps nothing.
    pub state_dir: Option<PathBuf>,
    /// Where the rooms report what happens in them (`events.rs`).
    pub events: Arc<dyn EventSink>,
    /// What every room is started with: the router, the sink, the store, the session cap.
    env: RoomEnv,
    rooms: Mutex<HashMap<String, mpsc::UnboundedSender<RoomMsg>>>,
    /// The rooms' way back in: transport routing and the join-latency meter.
    handle: HubHandle,
    /// WebSocket connections open now (the admin socket's `metrics`).
    pub open_sockets: AtomicU64,
    /// WebSocket connections accepted since start (the admin socket's `metrics`).
    pub sockets_accepted: AtomicU64,
    /// Server-side join time: a `join` read off its socket to its answer queued for the socket
    /// (the wait behind the room's other messages included), for the admin socket's `metrics`.
    pub join_latency: Arc<Mutex<schema::histogram::Histogram>>,
}

/// The default session cap: 12 h, the 100ms maximum.
pub const DEFAULT_MAX_SESSION: Duration = Duration::from_secs(43_200);

/// An open WebSocket connection, counted in [`Hub::open_sockets`].
#[derive(Debug)]
pub struct SocketGuard(Arc<Hub>);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0.open_sockets.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a hub is built with beyond the router link and the snapshot directory.
pub struct HubOptions {
    /// Where rooms report what happens in them; the default logs each event.
    pub events: Arc<dyn EventSink>,
    /// The longest a session may last (`--max-session-secs`); a room's own cap may be lower.
    pub max_session: Duration,
    /// The platform database: rooms' caps, and locking on `end-room {lock: true}`; `None`:
    /// every room gets `max_session`, and locking is logged and skipped.
    pub store: Option<store::Store>,
    /// The compositor's jobs directory, for peers' timed metadata; `None` refuses it.
    pub compositor_jobs_dir: Option<PathBuf>,
}

impl Default for HubOptions {
    fn default() -> HubOptions {
        HubOptions {
            events: Arc::new(LogSink),
            max_session: DEFAULT_MAX_SESSION,
            store: None,
            compositor_jobs_dir: None,
        }
    }
}

impl std::fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubOptions").field("max_session", &self.max_session).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("transports", &self.transport_count()).finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub with the defaults: events logged, 12 h sessions, no database to lock rooms in.
    pub fn new(router: Arc<RouterLink>, state_dir: Option<PathBuf>) -> Arc<Hub> {
        Hub::with_options(router, state_dir, HubOptions::default())
    }

    /// A hub with its event sink, session cap and store from `options`.
    pub fn with_options(router: Arc<RouterLink>, state_dir: Option<PathBuf>, options: HubOptions) -> Arc<Hub> {
        let handle = HubHandle::default();
        let env = RoomEnv {
            router: router.clone(),
            events: options.events.clone(),
            store: options.store.map(|s| Arc::new(Mutex::new(s))),
            max_session: options.max_session,
            state_dir: state_dir.clone(),
            compositor_jobs_dir: options.compositor_jobs_dir,
            hub: handle.clone(),
        };
        Arc::new(Hub {
            router,
            state_dir,
            events: options.events,
            env,
            rooms: Mutex::default(),
            join_latency: handle.join_latency.clone(),
            handle,
            open_sockets: AtomicU64::new(0),
            sockets_accepted: AtomicU64::new(0),
        })
    }

    /// How long a session of `room_id` may last from its first join; the room ends it then:
    /// the room's `max_duration_seconds` (12 h when unset), at most `--max-session-secs`.
    pub fn session_cap(&self, room_id: &str) -> Duration {
        self.env.session_cap(room_id)
    }

    /// Disables a room in the database (`end-room {lock: true}`): new joins are refused.
    pub fn lock_room(&self, room_id: &str) -> Result<(), String> {
        self.env.lock_room(room_id)
    }

    /// The running actor of `room_id`, if any (the admin socket's way in).
    pub fn running_room(&self, room_id: &str) -> Option<mpsc::UnboundedSender<RoomMsg>> {
        self.rooms.lock_unpoisoned().get(room_id).filter(|tx| !tx.is_closed()).cloned()
    }

    /// Starts the rooms a previous process left snapshots of, so their peers can reconnect
    /// (and, if they do not, are evicted and their router transports closed).
    pub fn restore_rooms(self: &Arc<Self>, store: &store::Store) {
        let Some(dir) = &self.state_dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(room_id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let room = store.room(room_id).ok().flatten();
            let template = room.as_ref().and_then(|r| store.template(&r.template_id).ok().flatten());
            match (room, template) {
                (Some(room), Some(template)) => {
                    self.room(&room, &template);
                }
                _ => {
                    warn!(path = %path.display(), "snapshot of a room that no longer exists; removed");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }

    /// The actor of a room, started if it is not running.
    pub fn room(self: &Arc<Self>, room: &store::Room, template: &store::Template) -> mpsc::UnboundedSender<RoomMsg> {
        let mut rooms = self.rooms.lock_unpoisoned();
        if let Some(tx) = rooms.get(&room.id).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let actor = Room::new(room.id.clone(), room.name.clone(), template.clone(), self.env.clone());
        tokio::spawn(actor.run(rx));
        rooms.insert(room.id.clone(), tx.clone());
        tx
    }

    /// Router events about `transport` go to `room_id` from now on.
    pub fn register_transport(&self, transport: TransportId, room_id: &str) {
        self.handle.register_transport(transport, room_id);
    }

    pub fn unregister_transport(&self, transport: TransportId) {
        self.handle.unregister_transport(transport);
    }

    /// Rooms whose actor is running.
    pub fn active_rooms(&self) -> usize {
        self.rooms.lock_unpoisoned().values().filter(|tx| !tx.is_closed()).count()
    }

    /// Counts a WebSocket connection as open until the guard drops.
    pub fn socket_opened(self: &Arc<Self>) -> SocketGuard {
        self.open_sockets.fetch_add(1, Ordering::Relaxed);
        self.sockets_accepted.fetch_add(1, Ordering::Relaxed);
        SocketGuard(self.clone())
    }

    /// Number of live transports (for logs and tests).
    pub fn transport_count(&self) -> usize {
        self.handle.transport_count()
    }

    /// Routes router events to rooms until the link closes.
    pub async fn route_events(self: Arc<Self>, mut events: mpsc::UnboundedReceiver<RouterEvent>) {
        while let Some(RouterEvent { event, .. }) = events.recv().await {
            let Some(transport) = event_transport(&event) else {
                // Layer changes, layers needed and audio levels name consumers and producers,
                // which only their room knows: every room gets them and keeps its own.
                if matches!(
                    event,
                    Event::ConsumerLayersChanged { .. } | Event::LayersNeeded { .. } | Event::AudioLevels { .. }
                ) {
                    let rooms: Vec<_> = self.rooms.lock_unpoisoned().values().cloned().collect();
                    for tx in rooms {
                        let _ = tx.send(RoomMsg::Router(event.clone()));
                    }
                }
                continue;
            };
            let room = self.handle.room_of(transport);
            let Some(room) = room else {
                debug!(%transport, "event for a transport no room owns (a previous process's?)");
                continue;
            };
            let tx = self.rooms.lock_unpoisoned().get(&room).cloned();
            if let Some(tx) = tx {
                let _ = tx.send(RoomMsg::Router(event));
            }
        }
    }
}

fn event_transport(event: &Event) -> Option<TransportId> {
    match event {
        Event::TransportConnected { transport, .. }
        | Event::TransportClosed { transport, .. }
        | Event::DataChannelOpened { transport, .. }
        | Event::DataChannelMessage { transport, .. } => Some(*transport),
        // Consumers and producers: only their room knows them (see `route_events`).
        Event::ConsumerLayersChanged { .. }
        | Event::LayersNeeded { .. }
        | Event::AudioLevels { .. }
        | Event::ProducerFirstPacket { .. }
        | Event::KeyframeSeen { .. }
        | Event::ProducerClosed { .. }
        | Event::ConsumerClosed { .. }
        | Event::Stats { .. } => None,
    }
}
