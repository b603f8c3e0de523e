//! Signaling: the edge between WebRTC clients and the router.
//!
//! Clients speak the 100ms client protocol (an `/init` endpoint, then JSON-RPC over a
//! WebSocket); signaling authenticates them, runs each peer's join / offer / answer / trickle /
//! leave flow, and drives the router through its direct API (`schema::api`). It never
//! touches media.
//!
//! # Data flow
//!
//! Each peer has two peer connections, each a router transport (`create_transport` returns a
//! [`schema::api::TransportInfo`] with the router's ICE-lite credentials, fingerprint and
//! host candidate):
//!
//! ```text
//! publish PC   client offer ─► sdp::answer_publish_offer ─► answer SDP ─► client
//!                                   ├─ ConnectParams  ─► router connect_transport
//!                                   └─ ProduceParams  ─► router produce (one per track)
//! subscribe PC router consume (mids from sdp::assign_mids) ─► ConsumerInfo
//!                                   ─► sdp::subscribe_offer ─► offer SDP ─► client
//!              client answer ─► sdp::read_subscribe_answer ─► ConnectParams ─► connect_transport
//! ```
//!
//! The SDP part ([`sdp`]) is sans-IO: strings in, strings and router parameters out, typed
//! errors for bad input ([`sdp::SdpError`]).
//!
//! # Modules
//!
//! - [`server`]: HTTPS `/init` and the WebSocket; [`rpc`]: JSON-RPC framing and codes.
//! - [`hub`]: the rooms of the process and the routing of router events to them.
//! - [`room`]: one actor per room, running the client flows; it reaches the world only through
//!   its [`room::RoomEnv`] (the router as a [`router_api::RouterApi`], the event sink, the
//!   store, a [`hub::HubHandle`]), so its flows run in unit tests against a fake router.
//! - [`router_link`]: the shared-memory link to the router; [`router_api`]: the trait rooms use.
//! - [`events`], [`store_sink`]: what happens in rooms, and its record in the store.
//! - [`admin`]: the control daemon's socket; [`protocol`]: the SDK's JSON shapes.
//!
//! # Example
//!
//! ```
//! use signaling::sdp::{answer_publish_offer, PublishPolicy, SdpError};
//! use schema::api::{IceCandidate, TransportInfo};
//! use schema::ids::TransportId;
//! let router = TransportInfo {
//!     id: TransportId(7), ice_ufrag: "rUfr".into(), ice_pwd: "routerpasswordrouterpass".into(),
//!     ice_lite: true, fingerprint: "sha-256 AB:CD".into(), dtls_role: "server".into(),
//!     candidates: vec![IceCandidate::udp("192.0.2.1:40000".parse().unwrap())],
//! };
//! let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
//!     m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n\
//!     a=ice-ufrag:cUfr\r\na=ice-pwd:clientpasswordclientpass\r\na=fingerprint:sha-256 01:02\r\n\
//!     a=setup:actpass\r\na=rtcp-mux\r\na=msid:stream1 track1\r\na=rtpmap:111 opus/48000/2\r\n\
//!     a=rtpmap:0 PCMU/8000\r\na=ssrc:1234 cname:x\r\n";
//! let answer = answer_publish_offer(offer, &router, &PublishPolicy::default()).unwrap();
//! assert!(answer.sdp.contains("a=setup:passive") && answer.sdp.contains("a=recvonly"));
//! assert_eq!(answer.tracks[0].produce.ssrc, Some(1234));
//! assert_eq!(answer.tracks[0].track_id.as_deref(), Some("track1"));
//!
//! let video_only = PublishPolicy { allow_audio: false, ..PublishPolicy::default() };
//! assert_eq!(answer_publish_offer(offer, &router, &video_only).unwrap_err(), SdpError::NoUsableCodec);
//! ```

pub mod admin;
pub mod events;
pub mod hub;
pub mod protocol;
pub mod room;
pub mod router_api;
pub mod router_link;
pub mod rpc;
pub mod sdp;
pub mod server;
pub mod store_sink;
pub mod whip;
