//! Peers that come by one HTTP request instead of the 100ms client protocol: a WHIP
//! publisher (RFC 9725) and a WHEP player (`crate::whip` serves the HTTP side).
//!
//! - **WHIP**: the offer is answered as a join's publish offer is, with the token's role's
//!   permissions; the peer joins like any other (`on-peer-join`, then `on-track-add` for its
//!   tracks, webhooks, the session started), so SDK subscribers see an ordinary peer. It has
//!   no socket and no subscribe connection.
//! - **WHEP**: the player offers receive-only m-lines; they get the audio and video of one
//!   publishing peer its role subscribes to (the one named, or the first to have joined),
//!   consumed with the player's own payload types, mids and extension ids. The router's
//!   bandwidth allocation picks its simulcast layer. A player is not joined: nobody sees it,
//!   and it keeps no session open. It cannot be renegotiated (WHEP has no way to add a
//!   track), so a track that ends stays ended for it.
//! - Either ends on `DELETE` of its resource, when its transport closes (ICE consent lost),
//!   or with the room.

use std::collections::BTreeMap;

use schema::api::{ConsumeParams, MediaKind};
use tracing::info;

use super::negotiate::{TrackIds, refuse_rejected};
use super::peer::{Peer, PublishSide, Published, SubscribeSide, Subscribed, Via};
use super::{MAX_NAME, Refusal, Room};
use crate::events::{LeaveReason, RoomEvent};
use crate::rpc::code;
use crate::sdp::{PlaybackSource, SubscribeTrack, answer_publish_offer, plan_playback};

/// Which kind of HTTP peer a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpPeerKind {
    Whip,
    Whep,
}

impl HttpPeerKind {
    fn via(self) -> Via {
        match self {
            HttpPeerKind::Whip => Via::Whip,
            HttpPeerKind::Whep => Via::Whep,
        }
    }
}

/// A WHIP or WHEP request, for the room's actor.
#[derive(Debug)]
pub enum HttpOp {
    /// Publish with this offer, as `user_id` in `role`, named `name`.
    Publish { user_id: String, role: String, name: String, offer: String },
    /// Play this receive-only offer: the tracks of `source` (a peer id), or of the first
    /// publishing peer the role subscribes to.
    Play { user_id: String, role: String, source: Option<String>, offer: String },
    /// `PATCH` with an SDP fragment: trickled candidates are accepted (an ICE-lite server
    /// learns the client's addresses from its checks); an ICE restart (a new `a=ice-ufrag`) is
    /// refused with 422. The resource must exist and be the caller's.
    Patch { kind: HttpPeerKind, peer_id: String, user_id: String, fragment: String },
    /// `DELETE`: the peer leaves.
    End { kind: HttpPeerKind, peer_id: String, user_id: String },
}

/// The answer to an [`HttpOp`].
#[derive(Debug, Clone, PartialEq)]
pub enum HttpReply {
    /// The resource is made: its peer id and the SDP answer.
    Created {
        peer_id: String,
        sdp: String,
    },
    Done,
}

impl Room {
    pub(super) async fn http_op(&mut self, op: HttpOp) -> Result<HttpReply, Refusal> {
        match op {
            HttpOp::Publish { user_id, role, name, offer } => self.whip_publish(user_id, role, name, &offer).await,
            HttpOp::Play { user_id, role, source, offer } => {
                self.whep_play(user_id, role, source.as_deref(), &offer).await
            }
            HttpOp::Patch { kind, peer_id, user_id, fragment } => {
                let peer = self.http_peer(kind, &peer_id, &user_id)?;
                let known = match kind {
                    HttpPeerKind::Whip => peer.publish.as_ref().and_then(|p| p.ice_ufrag.clone()),
                    HttpPeerKind::Whep => peer.subscribe.as_ref().and_then(|s| s.ice_ufrag.clone()),
                };
                let asked = fragment.lines().find_map(|l| l.trim().strip_prefix("a=ice-ufrag:")).map(str::trim);
                if asked.is_some_and(|u| Some(u) != known.as_deref()) {
                    return Err(Refusal::new(
                        code::NOT_IMPLEMENTED,
                        "ICE restarts are not supported: end this session (DELETE) and start a new one (POST)",
                    ));
                }
                Ok(HttpReply::Done)
            }
            HttpOp::End { kind, peer_id, user_id } => {
                self.http_peer(kind, &peer_id, &user_id)?;
                let reason = match kind {
                    HttpPeerKind::Whip => "the WHIP client ended its session (DELETE)",
                    HttpPeerKind::Whep => "the WHEP player ended its session (DELETE)",
                };
                self.remove_peer(&peer_id, LeaveReason::ClientRequest, reason).await;
                Ok(HttpReply::Done)
            }
        }
    }

    /// The resource's peer, if it is of this kind and the caller's.
    fn http_peer(&self, kind: HttpPeerKind, peer_id: &str, user_id: &str) -> Result<&Peer, Refusal> {
        self.peers
            .get(peer_id)
            .filter(|p| p.via == kind.via() && p.user_id == user_id)
            .ok_or_else(|| Refusal::new(code::NOT_FOUND, format!("no such session in room {}", self.id)))
    }

    async fn whip_publish(
        &mut self,
        user_id: String,
        role_name: String,
        name: String,
        offer: &str,
    ) -> Result<HttpReply, Refusal> {
        if name.len() > MAX_NAME {
            return Err(Refusal::new(code::BAD_REQUEST, format!("name longer than {MAX_NAME} bytes")));
        }
        let Some(role) = self.role(&role_name) else {
            return Err(Refusal::new(code::FORBIDDEN, format!("role '{role_name}' is not in the room's template")));
        };
        let policy = crate::sdp::PublishPolicy { accept_data_channel: false, ..self.publish_policy(role) };
        // A malformed offer is the client's error whatever state the router is in: refused
        // before a transport is asked of it.
        if let Err(e) = crate::sdp::Sdp::parse(offer) {
            return Err(Refusal::new(code::BAD_REQUEST, format!("unusable offer: {}", crate::sdp::SdpError::from(e))));
        }
        let peer_id = store::new_id();
        let record = crate::events::EventPeer::new(&peer_id, &user_id, &name, &role_name, std::time::SystemTime::now());
        self.check_join_capacity(record)?;
        let transport = self.new_transport(&peer_id).await?;
        let answer = answer_publish_offer(offer, &transport, &policy)
            .map_err(|e| Refusal::new(code::BAD_REQUEST, format!("unusable offer: {e}")))
            .and_then(|a| refuse_rejected(&a, &role_name).map(|_| a))
            .and_then(|a| {
                if a.tracks.is_empty() {
                    Err(Refusal::new(code::BAD_REQUEST, "the offer sends no audio or video"))
                } else {
                    Ok(a)
                }
            });
        let answer = match answer {
            Ok(a) => a,
            Err(refusal) => {
                self.close_transport(transport.id).await;
                return Err(refusal);
            }
        };
        if let Err(e) = self.env.router.connect_transport(transport.id, answer.connect.clone()).await {
            self.close_transport(transport.id).await;
            return Err(e.into());
        }
        self.open_session(&peer_id);
        let now = util::unix_ms();
        let peer = Peer {
            id: peer_id.clone(),
            name: if name.is_empty() { user_id.clone() } else { name },
            user_id,
            role: role_name,
            data: String::new(),
            joined_at_ms: now,
            joined: true,
            video_on_request: false,
            conn: 0,
            out: None,
            away_since: None,
            publish: Some(PublishSide {
                transport,
                ice_ufrag: answer.connect.ice_ufrag.clone(),
                tracks: BTreeMap::new(),
            }),
            subscribe: None,
            via: Via::Whip,
            observed_keys: Default::default(),
            groups: Default::default(),
        };
        info!(room = %self.id, peer = %peer_id, name = %peer.name, role = %peer.role, "WHIP publisher joined");
        let (event_peer, note) = (peer.event(), peer.notification());
        self.peers.insert(peer_id.clone(), peer);
        let room = self.event_room();
        self.emit(RoomEvent::PeerJoined { room, peer: event_peer });
        self.push_others(&peer_id, "on-peer-join", &note);
        self.push_session_info();
        if let Err(refusal) = self.publish_answered(&peer_id, &answer, &BTreeMap::new(), TrackIds::ByMid).await {
            self.remove_peer(&peer_id, LeaveReason::ServerRemovedPeer, &refusal.message).await;
            return Err(refusal);
        }
        Ok(HttpReply::Created { peer_id, sdp: answer.sdp })
    }

    /// The peer a player of `role` watches, and its tracks to play: its first camera (else
    /// screen) and its first microphone.
    fn playable(&self, role_name: &str, source: Option<&str>) -> Result<Vec<(String, Published)>, Refusal> {
        let role = self.role(role_name).ok_or_else(|| {
            Refusal::new(code::FORBIDDEN, format!("role '{role_name}' is not in the room's template"))
        })?;
        let publishing = |p: &&Peer| p.joined && p.publish.as_ref().is_some_and(|s| !s.tracks.is_empty());
        let mut candidates: Vec<&Peer> = self.peers.values().filter(publishing).collect();
        candidates.sort_by_key(|p| {
            let has_video = p.publish.iter().flat_map(|s| s.tracks.values()).any(|t| t.kind == MediaKind::Video);
            (!has_video, p.joined_at_ms)
        });
        let peer = match source {
            Some(id) => {
                let peer = candidates.into_iter().find(|p| p.id == id).ok_or_else(|| {
                    Refusal::new(code::NOT_FOUND, format!("peer {id} publishes nothing in this room"))
                })?;
                if !role.subscribes_to(&peer.role) {
                    return Err(Refusal::new(
                        code::FORBIDDEN,
                        format!("role '{role_name}' does not subscribe to role '{}'", peer.role),
                    ));
                }
                peer
            }
            None => candidates.into_iter().find(|p| role.subscribes_to(&p.role)).ok_or_else(|| {
                Refusal::new(code::CONFLICT, format!("nothing to watch: no peer publishes to role '{role_name}' now"))
            })?,
        };
        let tracks = peer.publish.iter().flat_map(|s| s.tracks.iter());
        let mut video: Vec<(&String, &Published)> =
            tracks.clone().filter(|(_, t)| t.kind == MediaKind::Video).collect();
        video.sort_by_key(|(_, t)| t.state.is_screen());
        let audio = tracks.clone().find(|(_, t)| t.kind == MediaKind::Audio);
        Ok(video.into_iter().take(1).chain(audio).map(|(id, t)| (id.clone(), t.clone())).collect())
    }

    async fn whep_play(
        &mut self,
        user_id: String,
        role: String,
        source: Option<&str>,
        offer: &str,
    ) -> Result<HttpReply, Refusal> {
        // A track from a snapshot of an older version has no codec on record: not playable.
        let tracks: Vec<(String, Published)> =
            self.playable(&role, source)?.into_iter().filter(|(_, t)| t.codec.is_some()).collect();
        let sources: Vec<PlaybackSource> = tracks
            .iter()
            .filter_map(|(_, t)| Some(PlaybackSource { kind: t.kind, codec: t.codec?, fmtp: t.fmtp.clone() }))
            .collect();
        let plan = plan_playback(offer, &sources)
            .map_err(|e| Refusal::new(code::BAD_REQUEST, format!("unusable offer: {e}")))?;
        let peer_id = store::new_id();
        let transport = self.new_transport(&peer_id).await?;
        let mut subscribed = BTreeMap::new();
        let mut answered = Vec::new();
        for line in &plan.lines {
            let (track_id, published) = &tracks[line.source];
            let params = ConsumeParams {
                producer: published.producer,
                payload_type: Some(line.payload_type),
                rtx_payload_type: line.rtx_payload_type,
                mid: Some(line.mid.clone()),
                extensions: line.extensions,
                paused: false,
                preferred_layer: None,
            };
            let consumer = match self.env.router.consume(transport.id, params).await {
                Ok(c) => c,
                Err(e) => {
                    self.close_transport(transport.id).await;
                    return Err(e.into());
                }
            };
            answered.push(SubscribeTrack {
                consumer: consumer.clone(),
                mid: line.mid.clone(),
                stream_id: published.state.stream_id.clone(),
                track_id: track_id.clone(),
                extensions: line.extensions,
                fmtp: published.fmtp.clone(),
            });
            subscribed.insert(
                track_id.clone(),
                Subscribed {
                    consumer,
                    mid: line.mid.clone(),
                    stream_id: published.state.stream_id.clone(),
                    fmtp: published.fmtp.clone(),
                    paused: false,
                    asked: false,
                },
            );
        }
        let sdp = match plan.answer(&transport, &answered) {
            Ok(sdp) => sdp,
            Err(e) => {
                self.close_transport(transport.id).await;
                return Err(Refusal::new(code::INTERNAL, format!("cannot write the answer: {e}")));
            }
        };
        if let Err(e) = self.env.router.connect_transport(transport.id, plan.connect.clone()).await {
            self.close_transport(transport.id).await;
            return Err(e.into());
        }
        info!(room = %self.id, peer = %peer_id, %user_id, tracks = ?subscribed.keys().collect::<Vec<_>>(), "WHEP player started");
        self.peers.insert(
            peer_id.clone(),
            Peer {
                id: peer_id.clone(),
                name: user_id.clone(),
                user_id,
                role,
                data: String::new(),
                joined_at_ms: util::unix_ms(),
                joined: false,
                video_on_request: false,
                conn: 0,
                out: None,
                away_since: None,
                publish: None,
                subscribe: Some(SubscribeSide {
                    transport,
                    ice_ufrag: plan.connect.ice_ufrag.clone(),
                    connected: true,
                    last_offer: None,
                    awaiting_answer: false,
                    dirty: false,
                    tracks: subscribed,
                }),
                via: Via::Whep,
                observed_keys: Default::default(),
                groups: Default::default(),
            },
        );
        Ok(HttpReply::Created { peer_id, sdp })
    }
}
