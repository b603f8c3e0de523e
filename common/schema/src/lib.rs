//! The one typed, versioned schema of the messages that cross process boundaries: the router's
//! commands, replies and events today; signaling↔control and recorder messages as those
//! processes arrive. Every process depends on this crate, and on nothing heavier through it
//! (serde, serde_json, thiserror only: no engine, no crypto).
//!
//! # What is where
//!
//! - [`ids`], [`codec`], [`extensions`], [`layers`]: the plain data the API is made of (object
//!   ids, codec names, negotiated RTP header extension ids, simulcast layer names).
//! - [`api`]: the router's direct API: command parameters, results, events, errors.
//! - [`router`]: [`RouterCommand`] (one call of the direct API), [`RouterResponse`] (what it
//!   returns, typed) and the request, reply and event envelopes of the router link.
//! - [`recording`]: the recorder's reports to control and the track metadata of a tap.
//! - [`tap`]: the binary records of the media tap (router shard → recorder).
//! - [`histogram`]: the fixed-bucket latency histogram the processes report in their metrics.
//! - [`message`]: [`Message`], one variant per message of every link, and its kind numbers.
//! - [`frame`]: how a [`Message`] travels: a JSON envelope `{"v": SCHEMA_VERSION, ...}` or a
//!   binary frame (magic, version, kind, length, payload) for the shared-memory queues. Both
//!   check the version first and refuse a mismatch with an error that says which side to upgrade.
//!
//! The engine and the router name these types by their paths here; nothing re-exports them
//! under another name.
//!
//! # Data flow
//!
//! ```text
//! signaling ── Message::RouterCommand(RouterRequest { id, command }) ──frame──► router
//!           ◄── Message::RouterReply(RouterReply { id, result }) ─────frame─── router
//!           ◄── Message::RouterEvent(RouterEvent { shard, event }) ───frame─── router
//! ```
//!
//! # Example
//!
//! ```
//! use schema::api::ApiError;
//! use schema::frame;
//! use schema::ids::TransportId;
//! use schema::router::{RouterCommand, RouterReply, RouterRequest};
//! use schema::Message;
//!
//! // The caller sends a command ...
//! let cmd = RouterCommand::CloseTransport { transport: TransportId(0x0100_0002) };
//! let mut wire = Vec::new();
//! frame::encode(&Message::RouterCommand(RouterRequest { id: 7, command: cmd.clone() }), &mut wire).unwrap();
//!
//! // ... the router reads it, routes it by the id's shard and answers.
//! let Message::RouterCommand(req) = frame::decode(&wire).unwrap() else { unreachable!() };
//! assert_eq!((req.command.shard(), &req.command), (Some(1), &cmd));
//! let reply = RouterReply { id: req.id, result: Err(ApiError::UnknownTransport(TransportId(0x0100_0002))) };
//! let line = frame::encode_json(&reply.into()).unwrap();
//! assert!(line.starts_with(r#"{"v":7,"type":"router_reply","id":7,"#));
//! ```
//!
//! # Versioning
//!
//! [`SCHEMA_VERSION`] covers the whole schema. Any change to a message that an older build
//! would misread (a new variant, a new required field, a renamed or retyped one) bumps it;
//! both framings then refuse mismatched peers with [`frame::FrameError::VersionMismatch`].

pub mod api;
pub mod codec;
pub mod compositor;
pub mod extensions;
pub mod frame;
pub mod histogram;
pub mod ids;
pub mod layers;
pub mod message;
pub mod recording;
pub mod router;
pub mod tap;

pub use message::{Message, MessageKind};
pub use router::{CommandTarget, RouterCommand, RouterEvent, RouterReply, RouterRequest, RouterResponse, RouterResult};

/// The version of this schema, carried by every framed message. Bump it on any change an
/// older build would misread.
///
/// History: 1, the first; 2, data channels (`open_data_channel`, `send_data`, their events and
/// errors); 3, the media tap (`start_tap`, `stop_tap`, [`tap::TapRecord`]); 4, typed replies: a
/// [`RouterReply`]'s success is a [`RouterResponse`], tagged by its shape
/// (`{"ok": {"transport": {...}}}`, `{"ok": null}` unchanged), where it was untyped JSON; 5,
/// several taps per producer, each for a reader ([`tap::TapReader`]: the recorder or the
/// compositor): `start_tap` names its reader and `stop_tap` the tap it ends; 6, a transport's
/// `candidates` (UDP and ICE-TCP, each announced address) where it had one `candidate`; 7,
/// `transport_link_stats` (a subscriber's estimate, loss and round trip, for signaling's
/// connection quality).
pub const SCHEMA_VERSION: u16 = 7;
