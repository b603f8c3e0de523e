//! [`Message`]: everything that crosses a process boundary, one variant per message of each
//! link, and [`MessageKind`], the number that names a variant in a binary frame.
//!
//! # Links and kind numbers
//!
//! | link | variants | kinds |
//! | --- | --- | --- |
//! | signaling/control → router | [`Message::RouterCommand`] | 1 |
//! | router → signaling/control | [`Message::RouterReply`], [`Message::RouterEvent`] | 2, 3 |
//! | signaling ↔ control | (room state, peer joins and leaves, permissions: added by the signaling work) | 100..=199 |
//! | recorder ↔ control, router → recorder | (recording start/stop, finished assets, media tap records: added by the recorder work) | 200..=299 |
//!
//! Ranges are reserved so that a link's messages can be added without renumbering another's.
//! Adding a variant, or changing any variant's fields, is a schema change: bump
//! [`crate::SCHEMA_VERSION`], so that a process built against the old schema refuses the new
//! messages with a clear [`crate::frame::FrameError::VersionMismatch`] instead of misreading them.
//!
//! JSON form (inside the `{"v": ...}` envelope of [`crate::frame::encode_json`]): the variant
//! body's fields plus a `"type"` tag, e.g.
//! `{"type": "router_event", "shard": 0, "event": {"event": "keyframe_seen", "producer": 5}}`.

use serde::{Deserialize, Serialize};

use crate::router::{RouterEvent, RouterReply, RouterRequest};

/// Every message of every inter-process link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// A command to the router, with the caller's request id.
    RouterCommand(RouterRequest),
    /// The router's answer to one command.
    RouterReply(RouterReply),
    /// Something that happened on a router shard.
    RouterEvent(RouterEvent),
}

impl Message {
    /// The kind number this message carries in a binary frame.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::RouterCommand(_) => MessageKind::RouterCommand,
            Message::RouterReply(_) => MessageKind::RouterReply,
            Message::RouterEvent(_) => MessageKind::RouterEvent,
        }
    }
}

impl From<RouterRequest> for Message {
    fn from(r: RouterRequest) -> Self {
        Message::RouterCommand(r)
    }
}

impl From<RouterReply> for Message {
    fn from(r: RouterReply) -> Self {
        Message::RouterReply(r)
    }
}

impl From<RouterEvent> for Message {
    fn from(e: RouterEvent) -> Self {
        Message::RouterEvent(e)
    }
}

/// The number naming a [`Message`] variant in a binary frame header. Stable within a schema
/// version; see the module docs for the reserved ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum MessageKind {
    RouterCommand = 1,
    RouterReply = 2,
    RouterEvent = 3,
}

impl MessageKind {
    /// Every kind, in number order.
    pub const ALL: [MessageKind; 3] = [MessageKind::RouterCommand, MessageKind::RouterReply, MessageKind::RouterEvent];

    /// The kind with this number, if this schema version has one.
    pub fn from_u16(n: u16) -> Option<MessageKind> {
        MessageKind::ALL.into_iter().find(|k| k.as_u16() == n)
    }

    pub fn as_u16(self) -> u16 {
        self as u16
    }
}
