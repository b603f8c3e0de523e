//! A peer of a room as the room keeps it: its two peer connections, what it publishes and
//! what it receives (all of it in the room's snapshot).

use std::collections::BTreeMap;
use std::time::Instant;

use schema::api::{ConsumerInfo, MediaKind, TransportInfo};
use schema::codec::Codec;
use schema::ids::{ProducerId, TransportId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::TrackKind;

use super::{Outbound, Outbox, system_time};
use crate::events::{EventPeer, EventTrack};
use crate::protocol::{PeerInfo, TrackState};
use crate::rpc;
use crate::sdp::SubscribeOffer;

/// A track a peer publishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Published {
    pub(super) state: TrackState,
    pub(super) producer: ProducerId,
    pub(super) kind: MediaKind,
    /// The codec the publisher sends (a WHEP player's offer is matched against it); `None`
    /// in a snapshot from before it was kept.
    #[serde(default)]
    pub(super) codec: Option<Codec>,
    pub(super) rtx_payload_type: Option<u8>,
    pub(super) fmtp: Option<String>,
    /// When it was first published (ms since the epoch).
    #[serde(default)]
    pub(super) started_at_ms: u64,
}

impl Published {
    /// The kind `publishParams.allowed` names for this track.
    pub(super) fn needed_kind(&self) -> TrackKind {
        match (self.kind, self.state.is_screen()) {
            (MediaKind::Audio, _) => TrackKind::Audio,
            (MediaKind::Video, true) => TrackKind::Screen,
            (MediaKind::Video, false) => TrackKind::Video,
        }
    }

    pub(super) fn event(&self) -> EventTrack {
        EventTrack {
            track_id: self.state.track_id.clone(),
            stream_id: self.state.stream_id.clone(),
            kind: self.state.kind.clone(),
            source: self.state.source.clone(),
            mute: self.state.mute,
            started_at: system_time(self.started_at_ms),
        }
    }

    pub(super) fn admin(&self) -> Value {
        json!({
            "id": self.state.track_id,
            "stream_id": self.state.stream_id,
            "mute": self.state.mute,
            "type": self.state.kind,
            "source": self.state.source,
            "started_at_ms": self.started_at_ms,
            "description": self.state.description,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PublishSide {
    pub(super) transport: TransportInfo,
    pub(super) ice_ufrag: Option<String>,
    pub(super) tracks: BTreeMap<String, Published>,
}

/// One track a peer receives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Subscribed {
    pub(super) consumer: ConsumerInfo,
    pub(super) mid: String,
    pub(super) stream_id: String,
    pub(super) fmtp: Option<String>,
    /// Paused at the subscriber's request (or until it asks, for video under
    /// `disableVidAutoSub`).
    pub(super) paused: bool,
    /// The subscriber has asked for this video's layer (`prefer-video-track-state`): only then
    /// does it get `on-track-layer-update`s for it (see `layers_changed`).
    #[serde(default)]
    pub(super) asked: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SubscribeSide {
    pub(super) transport: TransportInfo,
    /// The client's ICE username fragment, where known (a WHEP player's, from its offer).
    #[serde(default)]
    pub(super) ice_ufrag: Option<String>,
    pub(super) connected: bool,
    pub(super) last_offer: Option<SubscribeOffer>,
    /// An offer is out and its answer has not come back: the next one waits.
    pub(super) awaiting_answer: bool,
    /// Something changed while an offer was out (or the socket was away).
    pub(super) dirty: bool,
    pub(super) tracks: BTreeMap<String, Subscribed>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Peer {
    pub(super) id: String,
    pub(super) user_id: String,
    pub(super) role: String,
    pub(super) name: String,
    pub(super) data: String,
    pub(super) joined_at_ms: u64,
    pub(super) joined: bool,
    /// Under `disableVidAutoSub` (the SDK's default) video waits for a layer request.
    pub(super) video_on_request: bool,
    #[serde(skip)]
    pub(super) conn: u64,
    #[serde(skip)]
    pub(super) out: Option<Outbox>,
    #[serde(skip)]
    pub(super) away_since: Option<Instant>,
    pub(super) publish: Option<PublishSide>,
    pub(super) subscribe: Option<SubscribeSide>,
    /// How the peer came: the 100ms client protocol on a WebSocket, or one HTTP request
    /// (WHIP, WHEP) and no socket at all.
    #[serde(default)]
    pub(super) via: Via,
    /// The session-store keys the peer observes (`listen-metadata-change`).
    #[serde(default)]
    pub(super) observed_keys: std::collections::BTreeSet<String>,
    /// The groups the peer is in (`group-join`; `_handraise` is a raised hand).
    #[serde(default)]
    pub(super) groups: std::collections::BTreeSet<String>,
}

/// How a peer reaches the room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Via {
    /// The 100ms SDK: a WebSocket, a publish and a subscribe connection.
    #[default]
    Sdk,
    /// A WHIP publisher: one publish connection, no socket. An ordinary peer to the others.
    Whip,
    /// A WHEP player: one receive-only connection, no socket. Not joined: the others never
    /// see it, and it does not keep a session open.
    Whep,
}

impl Via {
    /// Has a socket that may come back: only SDK peers wait out a reconnection.
    pub(super) fn reconnects(self) -> bool {
        self == Via::Sdk
    }
}

impl Peer {
    pub(super) fn info(&self) -> PeerInfo<'_> {
        PeerInfo {
            peer_id: &self.id,
            role: &self.role,
            name: &self.name,
            data: &self.data,
            user_id: &self.user_id,
            joined_at_ms: self.joined_at_ms,
            groups: &self.groups,
        }
    }

    pub(super) fn tracks(&self) -> impl Iterator<Item = &TrackState> {
        self.publish.iter().flat_map(|p| p.tracks.values().map(|t| &t.state))
    }

    pub(super) fn notification(&self) -> Value {
        self.info().notification(self.tracks())
    }

    pub(super) fn send(&self, text: String) {
        if let Some(out) = &self.out {
            let _ = out.send(Outbound::Text(text));
        }
    }

    pub(super) fn push(&self, method: &str, params: Value) {
        self.send(rpc::push(method, params));
    }

    pub(super) fn event(&self) -> EventPeer {
        EventPeer {
            peer_id: self.id.clone(),
            user_id: self.user_id.clone(),
            name: self.name.clone(),
            metadata: self.data.clone(),
            role: self.role.clone(),
            joined_at: system_time(self.joined_at_ms),
        }
    }

    /// The peer as the admin socket shows it.
    pub(super) fn admin(&self) -> Value {
        let tracks: serde_json::Map<String, Value> =
            self.publish.iter().flat_map(|p| p.tracks.iter().map(|(id, t)| (id.clone(), t.admin()))).collect();
        json!({
            "id": self.id,
            "name": self.name,
            "user_id": self.user_id,
            "metadata": self.data,
            "role": self.role,
            "joined_at_ms": self.joined_at_ms,
            "tracks": tracks,
        })
    }

    /// Pushes `on-peer-leave-request` and closes the socket: the SDK leaves on it.
    pub(super) fn send_off(&mut self, by: Option<&str>, reason: &str, room_end: bool) {
        let mut note = json!({ "reason": reason, "room_end": room_end });
        if let Some(by) = by {
            note["requested_by"] = json!(by);
        }
        if self.joined {
            self.push("on-peer-leave-request", note);
        }
        if let Some(out) = self.out.take() {
            let why = if room_end { "the room was ended" } else { "removed from the room" };
            let _ = out.send(Outbound::Close(1000, why.into()));
        }
    }

    pub(super) fn owns(&self, transport: TransportId) -> bool {
        self.publish.as_ref().is_some_and(|p| p.transport.id == transport)
            || self.subscribe.as_ref().is_some_and(|s| s.transport.id == transport)
    }
}
