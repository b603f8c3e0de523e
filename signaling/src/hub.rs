//! The rooms of this signaling process: one actor per room ([`crate::room`]), created on the
//! first socket for it, and the routing of router events to the room that owns the transport.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tracing::debug;

use router_engine::TransportId;
use schema::RouterEvent;
use schema::api::Event;

use crate::room::{Room, RoomMsg};
use crate::router_link::RouterLink;

/// Every room, and which room each router transport belongs to.
pub struct Hub {
    pub router: Arc<RouterLink>,
    rooms: Mutex<HashMap<String, mpsc::UnboundedSender<RoomMsg>>>,
    transports: Mutex<HashMap<TransportId, String>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("transports", &self.transport_count()).finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new(router: Arc<RouterLink>) -> Arc<Hub> {
        Arc::new(Hub { router, rooms: Mutex::default(), transports: Mutex::default() })
    }

    /// The actor of a room, started if it is not running.
    pub fn room(self: &Arc<Self>, room: &store::Room, template: &store::Template) -> mpsc::UnboundedSender<RoomMsg> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = rooms.get(&room.id).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let actor = Room::new(room.id.clone(), room.name.clone(), template.clone(), self.clone());
        tokio::spawn(actor.run(rx));
        rooms.insert(room.id.clone(), tx.clone());
        tx
    }

    pub fn register_transport(&self, transport: TransportId, room_id: &str) {
        self.transports.lock().unwrap_or_else(|p| p.into_inner()).insert(transport, room_id.to_owned());
    }

    pub fn unregister_transport(&self, transport: TransportId) {
        self.transports.lock().unwrap_or_else(|p| p.into_inner()).remove(&transport);
    }

    /// Number of live transports (for logs and tests).
    pub fn transport_count(&self) -> usize {
        self.transports.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Routes router events to rooms until the link closes.
    pub async fn route_events(self: Arc<Self>, mut events: mpsc::UnboundedReceiver<RouterEvent>) {
        while let Some(RouterEvent { event, .. }) = events.recv().await {
            let Some(transport) = event_transport(&event) else { continue };
            let room = self.transports.lock().unwrap_or_else(|p| p.into_inner()).get(&transport).cloned();
            let Some(room) = room else {
                debug!(%transport, "event for a transport no room owns (a previous process's?)");
                continue;
            };
            let tx = self.rooms.lock().unwrap_or_else(|p| p.into_inner()).get(&room).cloned();
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
        _ => None,
    }
}
