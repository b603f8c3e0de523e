//! Router events about the room's transports, consumers and producers: transports lost,
//! the `ion-sfu` data channel and the track preferences on it, layer changes, audio levels.

use std::time::Instant;

use schema::api::{AudioLevel, CloseReason, Event, MediaKind};
use schema::ids::{ConsumerId, ProducerId, TransportId};
use schema::layers as simulcast;
use serde_json::{Value, json};
use tracing::{debug, trace, warn};

use super::rpc::{TrackPreferenceParams, decode};
use super::{DATA_CHANNEL_LABEL, PRIORITY_DEFAULT, PRIORITY_SPEAKER, Refusal, Room, SPEAKERS_REFRESH};
use crate::events::LeaveReason;
use crate::rpc::{self, Incoming, code};

impl Room {
    pub(super) async fn router_event(&mut self, event: Event) {
        match event {
            Event::TransportClosed { transport, reason } => {
                self.env.hub.unregister_transport(transport);
                if reason == CloseReason::Requested {
                    return;
                }
                let Some(peer) = self.peers.values().find(|p| p.owns(transport)) else { return };
                let id = peer.id.clone();
                warn!(room = %self.id, peer = %id, %transport, ?reason, "transport closed by the router; removing the peer");
                peer.push(
                    "on-peer-leave-request",
                    json!({ "reason": format!("media connection lost: {reason:?}"), "room_end": false }),
                );
                self.remove_peer(&id, LeaveReason::ServerRemovedPeer, &format!("media connection lost: {reason:?}"))
                    .await;
            }
            Event::TransportConnected { transport, remote } => {
                debug!(room = %self.id, %transport, %remote, "transport connected");
            }
            // Proves the channel to the SDK, which then waits the long timeout (§8).
            Event::DataChannelOpened { transport, label }
                if label == DATA_CHANNEL_LABEL
                    && self
                        .peers
                        .values()
                        .any(|p| p.subscribe.as_ref().is_some_and(|s| s.transport.id == transport)) =>
            {
                let _ = self.env.router.send_data(transport, DATA_CHANNEL_LABEL, "{}").await;
            }
            Event::DataChannelMessage { transport, label, text } => {
                self.data_channel_message(transport, &label, &text).await
            }
            Event::ConsumerLayersChanged { consumer, current, target, degraded, .. } => {
                self.layers_changed(consumer, current, target, degraded)
            }
            Event::AudioLevels { levels } => self.audio_levels(&levels).await,
            Event::LayersNeeded { producer, needed } => {
                if let Some((peer, track)) = self.track_of_producer(producer) {
                    // The 100ms SDK has no message to stop encoding a layer; the router just
                    // forwards none of it (docs/simulcast.md).
                    debug!(room = %self.id, %peer, %track, ?needed, "simulcast layers needed");
                }
            }
            // Another label, or a channel on a publish connection: nothing to prove.
            Event::DataChannelOpened { .. } => {}
            // The hub routes none of these to rooms (they name no transport, and no room needs
            // them): the SDK has no message for a first packet or a keyframe, a closed
            // producer or consumer is followed by its transport's or its peer's removal here,
            // and stats go to the router's metrics, not to clients.
            Event::ProducerFirstPacket { .. }
            | Event::KeyframeSeen { .. }
            | Event::ProducerClosed { .. }
            | Event::ConsumerClosed { .. }
            | Event::Stats { .. } => {}
        }
    }

    pub(super) fn track_of_producer(&self, producer: ProducerId) -> Option<(String, String)> {
        self.peers.values().find_map(|p| {
            let t = p.publish.as_ref()?.tracks.iter().find(|(_, t)| t.producer == producer)?;
            Some((p.id.clone(), t.0.clone()))
        })
    }

    /// `on-track-layer-update` to the subscriber whose consumer's layers changed: the SDK
    /// shows the layer and, with `current_layer: none` and degraded, the track as degraded.
    pub(super) fn layers_changed(
        &mut self,
        consumer: ConsumerId,
        current: Option<u8>,
        target: Option<u8>,
        degraded: bool,
    ) {
        let Some((peer, track_id, asked)) = self.peers.values().find_map(|p| {
            let sub = p.subscribe.as_ref()?;
            let (id, s) = sub.tracks.iter().find(|(_, s)| s.consumer.id == consumer)?;
            Some((p, id.clone(), s.asked))
        }) else {
            return;
        };
        // Not before the subscriber asked for the track: the SDK takes a layer update as the
        // answer to its own request and drops that request if it is still queued (its data
        // channel not open yet), so an early `current_layer: none` left the video unasked for,
        // and paused, for good (seen with four pages joining one room). Until it asks, the
        // SDK's own state (`none`) is right anyway.
        if !asked {
            trace!(room = %self.id, peer = %peer.id, track = %track_id, "layer update held: the subscriber has not asked for the track");
            return;
        }
        // While a switch waits for its keyframe the SDK should see the layer it gets, so the
        // current layer is what is forwarded; `expected_layer` is where it is going.
        let current_layer = simulcast::layer_name(current);
        let expected_layer = simulcast::layer_name(target);
        debug!(room = %self.id, peer = %peer.id, track = %track_id, current_layer, expected_layer, degraded, "layer update");
        peer.push(
            "on-track-layer-update",
            json!({ "tracks": { &track_id: {
                "track_id": track_id,
                "current_layer": current_layer,
                "expected_layer": expected_layer,
                "subscriber_degraded": degraded,
                "publisher_degraded": false,
            }}}),
        );
    }

    /// `active-speakers` to every peer when the room's speakers (loudest first) change, from
    /// the router's audio levels (every 500 ms at most). Levels of other rooms' producers are
    /// in the same event and ignored here.
    pub(super) async fn audio_levels(&mut self, levels: &[AudioLevel]) {
        let mut speakers = Vec::new();
        for l in levels {
            if let Some((peer, track)) = self.track_of_producer(l.producer) {
                speakers.push((peer, track, l.level));
            }
        }
        let names: Vec<(String, String)> = speakers.iter().map(|(p, t, _)| (p.clone(), t.clone())).collect();
        let refresh = !names.is_empty() && self.speakers_pushed_at.is_none_or(|t| t.elapsed() >= SPEAKERS_REFRESH);
        if names == self.speakers && !refresh {
            return;
        }
        let dominant_before = self.speakers.first().map(|(p, _)| p.clone());
        self.speakers = names;
        let list: Vec<Value> = speakers
            .iter()
            .map(|(peer, track, level)| json!({ "peer_id": peer, "track_id": track, "level": level }))
            .collect();
        self.push_all("active-speakers", &json!({ "speaker-list": list }));
        self.speakers_pushed_at = Some(Instant::now());
        // The active speaker's camera comes next after screenshares in bandwidth allocation.
        let dominant = self.speakers.first().map(|(p, _)| p.clone());
        if dominant != dominant_before {
            for (peer, priority) in [(dominant_before, PRIORITY_DEFAULT), (dominant, PRIORITY_SPEAKER)] {
                let Some(peer) = peer.and_then(|p| self.peers.get(&p)) else { continue };
                let producers: Vec<ProducerId> = peer
                    .publish
                    .iter()
                    .flat_map(|p| p.tracks.values())
                    .filter(|t| t.kind == MediaKind::Video && !t.state.is_screen())
                    .map(|t| t.producer)
                    .collect();
                for producer in producers {
                    if let Err(e) = self.env.router.set_producer_priority(producer, priority).await {
                        debug!(error = %e, "set_producer_priority");
                    }
                }
            }
        }
    }

    /// `prefer-video-track-state` / `prefer-audio-track-state` on the subscribe connection's
    /// `ion-sfu` channel: start or stop forwarding one track. (Layer choice comes with
    /// simulcast; any layer but `none` means "forward".)
    pub(super) async fn data_channel_message(&mut self, transport: TransportId, label: &str, text: &str) {
        let Some(peer_id) = self
            .peers
            .values()
            .find(|p| p.subscribe.as_ref().is_some_and(|s| s.transport.id == transport))
            .map(|p| p.id.clone())
        else {
            return;
        };
        let reply = match rpc::parse_incoming(text) {
            Ok(Incoming::Request { id, method, params }) => {
                let result = self.track_preference(&peer_id, &method, decode(params)).await;
                Some(match result {
                    Ok(()) => rpc::response(&id, json!({})),
                    Err(r) => rpc::error_response(&id, r.code, &r.message),
                })
            }
            Ok(_) => None,
            Err(e) => Some(rpc::error_response(&Value::Null, e.code(), &e.to_string())),
        };
        if let Some(reply) = reply
            && let Err(e) = self.env.router.send_data(transport, label, &reply).await
        {
            debug!(peer = %peer_id, error = %e, "data channel reply not sent");
        }
    }

    pub(super) async fn track_preference(
        &mut self,
        peer_id: &str,
        method: &str,
        params: TrackPreferenceParams,
    ) -> Result<(), Refusal> {
        let track_id = params.track_id.valid().ok_or_else(|| Refusal::new(code::INVALID_PARAMS, "track_id missing"))?;
        let track_id = track_id.as_str();
        let (pause, layer) = match method {
            "prefer-video-track-state" => {
                let name = params.max_spatial_layer.valid().unwrap_or_else(|| "high".to_owned());
                let name = name.as_str();
                let layer = simulcast::parse_layer_name(name)
                    .ok_or_else(|| Refusal::new(code::INVALID_PARAMS, format!("unknown max_spatial_layer '{name}'")))?;
                (layer.is_none(), layer)
            }
            "prefer-audio-track-state" => (!params.subscribed.valid().unwrap_or(true), None),
            other => return Err(Refusal::new(code::METHOD_NOT_FOUND, format!("unknown method '{other}'"))),
        };
        let sub = self
            .peers
            .get_mut(peer_id)
            .and_then(|p| p.subscribe.as_mut())
            .ok_or_else(|| Refusal::new(code::NOT_FOUND, "track not found"))?;
        let s = sub.tracks.get_mut(track_id).ok_or_else(|| Refusal::new(code::NOT_FOUND, "track not found"))?;
        let consumer = s.consumer.id;
        if method == "prefer-video-track-state" {
            s.asked = true;
        }
        if let Some(layer) = layer {
            // Before resuming, so the consumer restarts on the asked-for layer.
            self.env.router.set_preferred_layer(consumer, layer).await?;
        }
        if s.paused != pause {
            s.paused = pause;
            self.env.router.pause_consumer(consumer, pause).await?;
        }
        debug!(peer = %peer_id, track = %track_id, pause, ?layer, "subscription preference applied");
        Ok(())
    }
}
