//! Negotiation: the join, the publish offers and the subscribe offers and answers, and the
//! router transports, producers and consumers they create and close.

use std::collections::BTreeMap;
use std::time::SystemTime;

use schema::api::{ConsumeParams, MediaKind, TransportInfo};
use schema::codec::Codec;
use schema::ids::{ConsumerId, TransportId};
use serde_json::{Value, json};
use store::{Role, TrackKind};
use tracing::{debug, info, warn};

use super::peer::{PublishSide, Published, SubscribeSide, Subscribed};
use super::rpc::{AnswerParams, Desc, JoinParams, OfferParams, Param, track_map};
use super::{DATA_CHANNEL_LABEL, MAX_DATA, MAX_NAME, PRIORITY_DEFAULT, PRIORITY_SCREEN, Refusal, Room, system_time};
use crate::events::RoomEvent;
use crate::protocol::TrackState;
use crate::rpc::{self, code};
use crate::sdp::{
    PublishPolicy, RejectReason, SubscribeOptions, SubscribeTrack, answer_publish_offer, assign_mids,
    read_subscribe_answer, subscribe_extensions, subscribe_offer,
};

impl Room {
    /// The role's `maxSubsBitRate` (kbps; 0 is no cap) caps what the router sends the peer.
    pub(super) async fn apply_subscribe_cap(&self, peer_id: &str, transport: TransportId) {
        let Some(role) = self.peers.get(peer_id).and_then(|p| self.role(&p.role)) else { return };
        let kbps = role.subscribe_params.max_subs_bit_rate;
        let cap = (kbps > 0).then(|| u64::from(kbps) * 1000);
        if let Err(e) = self.env.router.set_transport_max_bitrate(transport, cap).await {
            warn!(room = %self.id, peer = %peer_id, error = %e, "cannot cap the subscribe bandwidth");
        }
    }

    pub(super) fn publish_policy(&self, role: &Role) -> PublishPolicy {
        PublishPolicy {
            allow_audio: role.may_publish(TrackKind::Audio),
            allow_video: role.may_publish(TrackKind::Video) || role.may_publish(TrackKind::Screen),
            video_codecs: video_codecs_for(role),
            ..PublishPolicy::default()
        }
    }

    pub(super) async fn new_transport(&mut self, peer_id: &str) -> Result<TransportInfo, Refusal> {
        let info = self.env.router.create_transport(self.shard).await?;
        self.shard.get_or_insert(info.id.shard());
        self.env.hub.register_transport(info.id, &self.id);
        debug!(room = %self.id, peer = %peer_id, transport = %info.id, "transport created");
        Ok(info)
    }

    pub(super) async fn close_transport(&self, id: TransportId) {
        self.env.hub.unregister_transport(id);
        if let Err(e) = self.env.router.close_transport(id).await {
            debug!(transport = %id, error = %e, "close_transport");
        }
    }

    pub(super) async fn join(&mut self, peer_id: &str, params: JoinParams) -> Result<Value, Refusal> {
        let Some(Desc { sdp: offer }) = params.offer.valid() else {
            return Err(Refusal::new(
                code::BAD_REQUEST,
                "join needs an offer: {\"offer\":{\"type\":\"offer\",\"sdp\":...}}",
            ));
        };
        let name = params.name.text("name", MAX_NAME)?.unwrap_or_default();
        let data = params.data.text("data", MAX_DATA)?.unwrap_or_default();
        let role_name = self.peers.get(peer_id).map(|p| p.role.clone()).unwrap_or_default();
        let Some(role) = self.role(&role_name) else {
            return Err(Refusal::new(code::FORBIDDEN, format!("role '{role_name}' is not in the room's template")));
        };
        let policy = self.publish_policy(role);
        if let Some(p) = self.peers.get(peer_id).filter(|p| !p.joined) {
            let mut record = p.event();
            record.name = name.clone();
            record.metadata = data.clone();
            record.joined_at = std::time::SystemTime::now();
            self.check_join_capacity(record)?;
        }
        if self.peers.get(peer_id).is_some_and(|p| p.joined) {
            // A repeated join (the SDK re-sends it after a 5xx): start over as a fresh
            // negotiation, without telling the others the peer left.
            self.drop_media(peer_id).await;
        }
        let transport = self.new_transport(peer_id).await?;
        let answer = match answer_publish_offer(&offer, &transport, &policy)
            .map_err(|e| Refusal::new(code::BAD_REQUEST, format!("unusable offer: {e}")))
            .and_then(|a| refuse_rejected(&a, &role_name).map(|_| a))
        {
            Ok(a) => a,
            Err(refusal) => {
                self.close_transport(transport.id).await;
                return Err(refusal);
            }
        };
        self.env.router.connect_transport(transport.id, answer.connect.clone()).await?;
        self.open_session(peer_id);
        let room = self.event_room();
        let Some(peer) = self.peers.get_mut(peer_id) else {
            return Err(Refusal::new(code::CONFLICT, "peer left during join"));
        };
        let rejoin = peer.joined;
        peer.name = name;
        peer.data = data;
        peer.video_on_request = params.disable_vid_auto_sub.valid().unwrap_or(false);
        peer.joined = true;
        peer.joined_at_ms = util::unix_ms();
        peer.publish =
            Some(PublishSide { transport, ice_ufrag: answer.connect.ice_ufrag.clone(), tracks: BTreeMap::new() });
        info!(room = %self.id, peer = %peer_id, name = %peer.name, role = %peer.role, "peer joined");
        if !rejoin {
            let peer = peer.event();
            self.emit(RoomEvent::PeerJoined { room, peer });
        }
        Ok(json!({ "type": "answer", "sdp": answer.sdp }))
    }

    /// A peer is joining: the session starts if none is open (or goes on, if it waited for
    /// its jobs with no peer in the room).
    pub(super) fn open_session(&mut self, peer_id: &str) {
        if self.session.is_none() {
            let started = util::unix_ms();
            self.session = Some((store::new_id(), started));
            // Read once for the session: the cap is checked every second.
            self.session_cap = Some(self.env.session_cap(&self.id));
            let room = self.event_room();
            self.emit(RoomEvent::SessionStarted { room, started_at: system_time(started) });
        } else if self.linger_until.take().is_some() {
            info!(room = %self.id, peer = %peer_id, "a peer joined while the jobs waited (autoStopTimeout); the session goes on");
        }
    }

    /// After the join answer: the peer list, the subscribe connection, the others told.
    pub(super) async fn after_join(&mut self, peer_id: &str) {
        let list = self.peer_list_for(peer_id);
        if let Some(p) = self.peers.get(peer_id) {
            p.push("peer-list", list);
        }
        if self.peers.get(peer_id).is_some_and(|p| p.subscribe.is_none()) {
            match self.new_transport(peer_id).await {
                Ok(transport) => {
                    if let Err(e) = self.env.router.open_data_channel(transport.id, DATA_CHANNEL_LABEL).await {
                        warn!(room = %self.id, peer = %peer_id, error = %e, "cannot open the ion-sfu data channel");
                    }
                    self.apply_subscribe_cap(peer_id, transport.id).await;
                    if let Some(p) = self.peers.get_mut(peer_id) {
                        p.subscribe = Some(SubscribeSide {
                            transport,
                            ice_ufrag: None,
                            connected: false,
                            last_offer: None,
                            awaiting_answer: false,
                            dirty: false,
                            tracks: BTreeMap::new(),
                        });
                    }
                }
                Err(e) => {
                    warn!(room = %self.id, peer = %peer_id, error = %e.message, "no subscribe transport");
                    if let Some(p) = self.peers.get(peer_id) {
                        p.push("on-error", json!({ "code": e.code, "message": e.message }));
                    }
                    return;
                }
            }
        }
        self.renegotiate(peer_id).await;
        let Some(p) = self.peers.get(peer_id) else { return };
        let note = p.notification();
        p.push("room-info", self.room_info());
        self.push_others(peer_id, "on-peer-join", &note);
        self.push_session_info();
    }

    pub(super) async fn publish_offer(&mut self, peer_id: &str, params: OfferParams) -> Result<Value, Refusal> {
        let Some(Desc { sdp }) = params.desc.valid() else {
            return Err(Refusal::new(code::BAD_REQUEST, "offer needs {\"desc\":{\"type\":\"offer\",\"sdp\":...}}"));
        };
        let announced: BTreeMap<String, TrackState> = match params.tracks {
            Param::Absent => BTreeMap::new(),
            Param::Valid(t) => t,
            Param::Invalid(e) => return Err(Refusal::new(code::BAD_REQUEST, format!("bad tracks map: {e}"))),
        };
        let Some(peer) = self.peers.get(peer_id).filter(|p| p.joined) else {
            // After a server restart the SDK re-offers on a new socket without `join`; the
            // session is gone, and an error here would be retried for 60 s (§9.8).
            if let Some(p) = self.peers.get(peer_id) {
                p.push(
                    "on-error",
                    json!({ "code": code::NOT_FOUND, "message": "this peer's session is gone; join again" }),
                );
            }
            return Err(Refusal::new(code::CONFLICT, "offer before join"));
        };
        let role = self.role(&peer.role).ok_or_else(|| Refusal::new(code::FORBIDDEN, "role vanished"))?;
        let policy = self.publish_policy(role);
        let publish = peer.publish.as_ref().ok_or_else(|| Refusal::new(code::CONFLICT, "no publish connection"))?;
        let answer = answer_publish_offer(&sdp, &publish.transport, &policy)
            .map_err(|e| Refusal::new(code::BAD_REQUEST, format!("unusable offer: {e}")))?;
        refuse_rejected(&answer, &peer.role)?;
        self.publish_answered(peer_id, &answer, &announced, TrackIds::FromOffer).await?;
        Ok(json!({ "type": "answer", "sdp": answer.sdp }))
    }

    /// Brings what a peer publishes in line with an answered publish offer: new tracks
    /// produced and announced, removed ones closed, an ICE restart applied; the others'
    /// subscribe connections renegotiated. `announced` is the SDK's `tracks` map (its source
    /// and mute state per track id).
    pub(super) async fn publish_answered(
        &mut self,
        peer_id: &str,
        answer: &crate::sdp::PublishAnswer,
        announced: &BTreeMap<String, TrackState>,
        ids: TrackIds,
    ) -> Result<(), Refusal> {
        let Some(peer) = self.peers.get(peer_id) else { return Err(Refusal::new(code::CONFLICT, "peer left")) };
        let role = self.role(&peer.role).ok_or_else(|| Refusal::new(code::FORBIDDEN, "role vanished"))?;
        let publish = peer.publish.as_ref().ok_or_else(|| Refusal::new(code::CONFLICT, "no publish connection"))?;
        // Every sending m-line must name its track, and the role must allow its source.
        let mut next: Vec<(String, TrackState, &crate::sdp::PublishedTrack)> = Vec::new();
        for t in &answer.tracks {
            let named = match (t.track_id.clone(), ids) {
                (Some(id), _) => Some(id),
                // Not every WHIP client writes an msid: its mid names the track.
                (None, TrackIds::ByMid) => Some(format!("{peer_id}-{}", t.mid)),
                (None, TrackIds::FromOffer) => None,
            };
            let Some(track_id) = named else {
                return Err(Refusal::new(code::BAD_REQUEST, format!("m-line mid {} has no a=msid track id", t.mid)));
            };
            let kind_name = match t.produce.kind {
                MediaKind::Audio => "audio",
                MediaKind::Video => "video",
            };
            let state = announced.get(&track_id).cloned().unwrap_or_else(|| TrackState {
                track_id: track_id.clone(),
                stream_id: t.stream_id.clone().unwrap_or_else(|| peer_id.to_string()),
                kind: kind_name.into(),
                source: "regular".into(),
                mute: false,
                description: String::new(),
            });
            let needed = match (t.produce.kind, state.is_screen()) {
                (MediaKind::Audio, _) => TrackKind::Audio,
                (MediaKind::Video, true) => TrackKind::Screen,
                (MediaKind::Video, false) => TrackKind::Video,
            };
            if !role.may_publish(needed) {
                return Err(Refusal::new(
                    code::FORBIDDEN,
                    format!("role '{}' may not publish {needed:?} (track {track_id})", peer.role).to_lowercase(),
                ));
            }
            next.push((track_id, state, t));
        }
        let transport_id = publish.transport.id;
        let ufrag_changed = publish.ice_ufrag != answer.connect.ice_ufrag;
        let current: Vec<String> = publish.tracks.keys().cloned().collect();

        if ufrag_changed {
            // An ICE restart: the client's new credentials.
            if let Err(e) = self.env.router.connect_transport(transport_id, answer.connect.clone()).await {
                debug!(error = %e, "connect_transport on ICE restart");
            }
        }
        let mut added = BTreeMap::new();
        let mut updated = Vec::new();
        for (track_id, state, t) in &next {
            if current.contains(track_id) {
                updated.push(state.clone());
                continue;
            }
            let mut produce = t.produce.clone();
            // Bandwidth allocation serves screenshares first (see docs/bandwidth.md).
            produce.priority = if state.is_screen() { PRIORITY_SCREEN } else { PRIORITY_DEFAULT };
            let producer = self.env.router.produce(transport_id, produce).await?;
            added.insert(
                track_id.clone(),
                Published {
                    state: state.clone(),
                    producer,
                    kind: t.produce.kind,
                    codec: Some(t.produce.codec),
                    rtx_payload_type: t.produce.rtx_payload_type,
                    fmtp: t.fmtp.clone(),
                    started_at_ms: util::unix_ms(),
                },
            );
        }
        let removed: Vec<String> = current.into_iter().filter(|id| !next.iter().any(|(n, ..)| n == id)).collect();
        let mut removed_states = Vec::new();
        let Some(peer) = self.peers.get_mut(peer_id) else { return Err(Refusal::new(code::CONFLICT, "peer left")) };
        let Some(publish) = peer.publish.as_mut() else { return Err(Refusal::new(code::CONFLICT, "peer left")) };
        publish.ice_ufrag = answer.connect.ice_ufrag.clone();
        let mut track_events = Vec::new();
        for id in &removed {
            if let Some(p) = publish.tracks.remove(id) {
                track_events.push((false, p.event()));
                removed_states.push((p.state, p.producer));
            }
        }
        track_events.extend(added.values().map(|p| (true, p.event())));
        for state in updated {
            if let Some(p) = publish.tracks.get_mut(&state.track_id) {
                p.state = state;
            }
        }
        let added_states: Vec<TrackState> = added.values().map(|p| p.state.clone()).collect();
        publish.tracks.extend(added);
        let brief = peer.info().brief();
        let event_peer = peer.event();
        let room = self.event_room();
        for (is_add, track) in track_events {
            let (room, peer) = (room.clone(), event_peer.clone());
            self.emit(if is_add {
                RoomEvent::TrackAdded { room, peer, track }
            } else {
                RoomEvent::TrackRemoved { room, peer, track, stopped_at: SystemTime::now() }
            });
        }
        for (_, producer) in &removed_states {
            if let Err(e) = self.env.router.close_producer(*producer).await {
                debug!(error = %e, "close_producer");
            }
        }
        self.tap_published().await;
        if !added_states.is_empty() {
            info!(room = %self.id, peer = %peer_id, tracks = ?added_states.iter().map(|t| &t.track_id).collect::<Vec<_>>(), "published");
            self.push_others(
                peer_id,
                "on-track-add",
                &json!({ "peer": brief, "tracks": track_map(added_states.iter()) }),
            );
        }
        if !removed_states.is_empty() {
            self.push_others(
                peer_id,
                "on-track-remove",
                &json!({ "peer": brief, "tracks": track_map(removed_states.iter().map(|(s, _)| s)) }),
            );
        }
        if !added_states.is_empty() || !removed_states.is_empty() {
            self.renegotiate_others(peer_id).await;
        }
        Ok(())
    }

    pub(super) async fn renegotiate_others(&mut self, peer_id: &str) {
        let others: Vec<String> =
            self.peers.values().filter(|p| p.joined && p.id != peer_id).map(|p| p.id.clone()).collect();
        for id in others {
            self.renegotiate(&id).await;
        }
    }

    /// Brings a peer's subscribe connection in line with what it should receive: consumers
    /// for new tracks, closed ones for gone tracks, and a new offer if anything changed. Waits
    /// (marks dirty) while an earlier offer is unanswered or the socket is away.
    pub(super) async fn renegotiate(&mut self, peer_id: &str) {
        let Some(peer) = self.peers.get(peer_id) else { return };
        let Some(role) = self.role(&peer.role) else { return };
        let Some(sub) = &peer.subscribe else { return };
        if sub.awaiting_answer || peer.out.is_none() {
            if let Some(sub) = self.peers.get_mut(peer_id).and_then(|p| p.subscribe.as_mut()) {
                sub.dirty = true;
            }
            return;
        }
        // What the role should receive: every track of every other joined peer whose role it
        // subscribes to, in a stable order.
        let mut wanted: Vec<(String, Published)> = Vec::new();
        for other in self.peers.values().filter(|p| p.joined && p.id != peer_id && role.subscribes_to(&p.role)) {
            if let Some(publish) = &other.publish {
                wanted.extend(publish.tracks.iter().map(|(id, t)| (id.clone(), t.clone())));
            }
        }
        let transport = sub.transport.id;
        let stale: Vec<(String, ConsumerId)> = sub
            .tracks
            .iter()
            .filter(|(id, _)| !wanted.iter().any(|(w, _)| w == *id))
            .map(|(id, s)| (id.clone(), s.consumer.id))
            .collect();
        let unchanged = stale.is_empty() && wanted.iter().all(|(id, _)| sub.tracks.contains_key(id));
        if unchanged && sub.last_offer.is_some() {
            return;
        }
        let mids = assign_mids(
            sub.last_offer.as_ref(),
            &wanted.iter().map(|(id, t)| (t.kind, id.as_str())).collect::<Vec<_>>(),
        );
        let video_on_request = peer.video_on_request;
        let existing: BTreeMap<String, Subscribed> = sub.tracks.clone();
        for (_, consumer) in &stale {
            if let Err(e) = self.env.router.close_consumer(*consumer).await {
                debug!(error = %e, "close_consumer (its producer may be gone already)");
            }
        }
        let mut tracks = BTreeMap::new();
        for ((track_id, published), mid) in wanted.iter().zip(mids) {
            if let Some(s) = existing.get(track_id) {
                tracks.insert(track_id.clone(), s.clone());
                continue;
            }
            let paused = video_on_request && published.kind == MediaKind::Video;
            let params = ConsumeParams {
                producer: published.producer,
                payload_type: None,
                rtx_payload_type: published.rtx_payload_type,
                mid: Some(mid.clone()),
                extensions: subscribe_extensions(published.kind),
                paused,
                preferred_layer: None,
            };
            match self.env.router.consume(transport, params).await {
                Ok(consumer) => {
                    tracks.insert(
                        track_id.clone(),
                        Subscribed {
                            consumer,
                            mid,
                            stream_id: published.state.stream_id.clone(),
                            fmtp: published.fmtp.clone(),
                            paused,
                            asked: false,
                        },
                    );
                }
                Err(e) => warn!(room = %self.id, peer = %peer_id, track = %track_id, error = %e, "consume failed"),
            }
        }
        let Some(peer) = self.peers.get_mut(peer_id) else { return };
        let Some(sub) = peer.subscribe.as_mut() else { return };
        let list: Vec<SubscribeTrack> = tracks
            .iter()
            .map(|(track_id, s)| SubscribeTrack {
                consumer: s.consumer.clone(),
                mid: s.mid.clone(),
                stream_id: s.stream_id.clone(),
                track_id: track_id.clone(),
                extensions: subscribe_extensions(s.consumer.kind),
                fmtp: s.fmtp.clone(),
            })
            .collect();
        match subscribe_offer(&sub.transport, &list, &SubscribeOptions::default(), sub.last_offer.as_ref()) {
            Ok(offer) => {
                let text = rpc::push("offer", json!({ "type": "offer", "sdp": offer.sdp }));
                sub.tracks = tracks;
                sub.last_offer = Some(offer);
                sub.awaiting_answer = true;
                sub.dirty = false;
                peer.send(text);
            }
            Err(e) => warn!(room = %self.id, peer = %peer_id, error = %e, "cannot write the subscribe offer"),
        }
    }

    pub(super) async fn subscribe_answer(&mut self, peer_id: &str, params: AnswerParams) {
        let Some(Desc { sdp }) = params.desc.valid() else {
            if let Some(p) = self.peers.get(peer_id) {
                p.push("on-warning", json!({ "code": code::BAD_REQUEST, "message": "answer needs desc.sdp" }));
            }
            return;
        };
        let Some(sub) = self.peers.get_mut(peer_id).and_then(|p| p.subscribe.as_mut()) else { return };
        let Some(offer) = sub.last_offer.as_ref().filter(|_| sub.awaiting_answer) else {
            debug!(peer = %peer_id, "answer with no offer out; ignored");
            return;
        };
        let parsed = read_subscribe_answer(&sdp, offer);
        sub.awaiting_answer = false;
        let transport = sub.transport.id;
        let first = !sub.connected;
        match parsed {
            Ok(answer) => {
                if first {
                    sub.connected = true;
                    if let Err(e) = self.env.router.connect_transport(transport, answer.connect).await {
                        warn!(room = %self.id, peer = %peer_id, error = %e, "connect subscribe transport");
                    }
                }
                if !answer.refused.is_empty() {
                    warn!(room = %self.id, peer = %peer_id, refused = ?answer.refused, "client refused subscribe m-lines");
                }
            }
            Err(e) => {
                warn!(room = %self.id, peer = %peer_id, error = %e, "bad subscribe answer");
                if let Some(p) = self.peers.get(peer_id) {
                    p.push("on-warning", json!({ "code": code::BAD_REQUEST, "message": format!("bad answer: {e}") }));
                }
            }
        }
        if self.peers.get(peer_id).and_then(|p| p.subscribe.as_ref()).is_some_and(|s| s.dirty) {
            self.renegotiate(peer_id).await;
        }
    }
}

/// Where a published track's id comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TrackIds {
    /// The m-line's `a=msid` (the 100ms SDK maps its tracks by it): refused without one.
    FromOffer,
    /// The `a=msid` if there is one, else made from the peer id and the mid (WHIP).
    ByMid,
}

/// The video codecs a role's peers are answered with, in order: the role's
/// `publishParams.video.codec` first (the 100ms SDK never sets codec preferences itself, so
/// the answer is where the template's choice takes effect), then the deployment's order. An
/// unknown or non-video name keeps the deployment's order.
fn video_codecs_for(role: &Role) -> Vec<Codec> {
    let mut order = PublishPolicy::default().video_codecs;
    let wanted = Codec::from_encoding_name(&role.publish_params.video.codec).filter(|c| c.is_video());
    if let Some(i) = wanted.and_then(|c| order.iter().position(|&o| o == c)) {
        let c = order.remove(i);
        order.insert(0, c);
    }
    order
}

/// An offer is taken whole or not at all: an m-line the role may not publish, or one with no
/// codec the router forwards, refuses it with the reason (a partial answer would leave the
/// client believing it publishes a track nobody receives).
pub(super) fn refuse_rejected(answer: &crate::sdp::PublishAnswer, role: &str) -> Result<(), Refusal> {
    for r in &answer.rejected {
        match r.reason {
            RejectReason::NotAllowed(_) => {
                return Err(Refusal::new(
                    code::FORBIDDEN,
                    format!("role '{role}' may not publish this track (m-line mid {}): {}", r.mid, r.reason),
                ));
            }
            RejectReason::NoUsableCodec => {
                return Err(Refusal::new(
                    code::BAD_REQUEST,
                    format!("m-line mid {} has no codec this server forwards (Opus, VP8, H.264, VP9)", r.mid),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roles_video_codec_is_preferred_in_the_answer() {
        let mut role = store::role::default_roles().into_values().next().expect("the default template has roles");
        assert_eq!(video_codecs_for(&role), [Codec::Vp8, Codec::H264, Codec::Vp9], "vp8 by default");
        role.publish_params.video.codec = "h264".into();
        assert_eq!(video_codecs_for(&role), [Codec::H264, Codec::Vp8, Codec::Vp9]);
        role.publish_params.video.codec = "opus".into();
        assert_eq!(video_codecs_for(&role), [Codec::Vp8, Codec::H264, Codec::Vp9], "not a video codec");
        role.publish_params.video.codec = "av1".into();
        assert_eq!(video_codecs_for(&role), [Codec::Vp8, Codec::H264, Codec::Vp9], "not one the router forwards");
    }
}
