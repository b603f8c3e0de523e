//! Framing: how a [`Message`] travels, with its schema version checked on arrival.
//!
//! Two forms of the same messages:
//!
//! - **JSON**, for text links (the control socket, logs, tests): an envelope object
//!   `{"v": SCHEMA_VERSION, "type": "<variant>", ...fields}` ([`encode_json`], [`decode_json`]).
//! - **Binary**, for the shared-memory queues: a 10-byte header, then the payload.
//!
//! ```text
//!  0      2        4      6              10
//!  +------+--------+------+--------------+--------------------+
//!  | magic| version| kind | payload len  | payload (len bytes)|
//!  | u16  | u16    | u16  | u32          |                    |
//!  +------+--------+------+--------------+--------------------+
//!  all little-endian (both ends share one host)
//! ```
//!
//! `kind` is the [`MessageKind`] number; the payload is the variant's body (without the
//! `"type"` tag, the kind says it) as **serde_json for now**: simple and debuggable, and the
//! header already carries what a reader needs to route or skip a frame without parsing it. A
//! compact binary payload encoding can replace it later behind a version bump.
//!
//! Decoding checks, in order: the header is complete, the magic, the version (so a reader
//! never tries to parse a schema it does not know), the length against [`MAX_PAYLOAD_LEN`]
//! (before waiting for or touching the payload), the payload is complete, the kind, the
//! payload. Each failure is a [`FrameError`]; no input makes it panic.
//!
//! ```
//! use schema::frame::{self, FrameError};
//! use schema::router::{RouterCommand, RouterRequest};
//! use schema::Message;
//!
//! let msg = Message::RouterCommand(RouterRequest { id: 1, command: RouterCommand::Counters { shard: Some(0) } });
//! let mut buf = Vec::new();
//! frame::encode(&msg, &mut buf).unwrap();
//! assert_eq!(frame::decode(&buf).unwrap(), msg);
//!
//! // A frame from a peer built against schema v9:
//! buf[2..4].copy_from_slice(&9u16.to_le_bytes());
//! let err = frame::decode(&buf).unwrap_err();
//! assert!(matches!(err, FrameError::VersionMismatch { theirs: 9, .. }));
//! assert!(err.to_string().contains("upgrade this process"));
//! ```

use serde::{Deserialize, Serialize};

use crate::SCHEMA_VERSION;
use crate::message::{Message, MessageKind};

/// First two bytes of every binary frame: `"SM"` (schema message) in memory order.
pub const MAGIC: u16 = u16::from_le_bytes(*b"SM");
/// Length of the binary frame header.
pub const HEADER_LEN: usize = 10;
/// Largest payload accepted or produced. Far above any message of the schema (a command is
/// under a kilobyte); its job is to make a corrupt length field an error, not a 4 GiB wait.
pub const MAX_PAYLOAD_LEN: usize = 1 << 20;

/// Why a frame or envelope could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The input ends before the frame does; with a stream, wait for `needed` bytes.
    #[error("frame truncated: {needed} bytes needed, {have} available")]
    Truncated { needed: usize, have: usize },
    #[error("not a schema frame: magic {found:#06x}, expected {MAGIC:#06x}")]
    BadMagic { found: u16 },
    /// The peer was built against another schema version. Neither side can read the other's
    /// messages safely; the message says which one to upgrade.
    #[error(
        "schema version mismatch: this process speaks schema v{ours}, the peer sent v{theirs}; {}",
        upgrade_advice(*.ours, *.theirs)
    )]
    VersionMismatch { ours: u16, theirs: u16 },
    #[error("message too large: {len} bytes, the limit is {max}")]
    TooLarge { len: usize, max: usize },
    /// A kind number this schema version does not define.
    #[error("unknown message kind {0} in a schema v{SCHEMA_VERSION} frame")]
    UnknownKind(u16),
    /// [`decode`] takes exactly one frame; use [`decode_prefix`] for a buffer of several.
    #[error("{0} bytes after the end of the frame")]
    TrailingBytes(usize),
    #[error("JSON message has no \"v\" (schema version) field")]
    MissingVersion,
    /// The payload (or JSON text) is not a valid message of its kind: the serde_json error.
    #[error("invalid message: {0}")]
    Payload(String),
}

fn upgrade_advice(ours: u16, theirs: u16) -> &'static str {
    if theirs > ours {
        "upgrade this process (it is the older side) or run matching versions"
    } else {
        "upgrade the peer (it is the older side) or run matching versions"
    }
}

impl FrameError {
    /// A stable machine-readable code, for error replies (`"version_mismatch"`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::Truncated { .. } => "truncated",
            FrameError::BadMagic { .. } => "bad_magic",
            FrameError::VersionMismatch { .. } => "version_mismatch",
            FrameError::TooLarge { .. } => "too_large",
            FrameError::UnknownKind(_) => "unknown_kind",
            FrameError::TrailingBytes(_) => "trailing_bytes",
            FrameError::MissingVersion => "missing_version",
            FrameError::Payload(_) => "bad_message",
        }
    }
}

/// `Ok` when `theirs` is the version this build speaks.
pub fn check_version(theirs: u16) -> Result<(), FrameError> {
    if theirs == SCHEMA_VERSION { Ok(()) } else { Err(FrameError::VersionMismatch { ours: SCHEMA_VERSION, theirs }) }
}

/// A binary frame header, read without touching the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    /// The raw kind number: [`MessageKind::from_u16`] tells whether this build knows it.
    pub kind: u16,
    /// Payload length in bytes.
    pub len: u32,
}

impl Header {
    /// Reads and checks the header at the start of `buf`: magic, version, length limit. The
    /// payload need not have arrived yet.
    pub fn parse(buf: &[u8]) -> Result<Header, FrameError> {
        let Some(h) = buf.first_chunk::<HEADER_LEN>() else {
            return Err(FrameError::Truncated { needed: HEADER_LEN, have: buf.len() });
        };
        let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
        let magic = u16_at(0);
        if magic != MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        let header = Header { version: u16_at(2), kind: u16_at(4), len: u32::from_le_bytes([h[6], h[7], h[8], h[9]]) };
        check_version(header.version)?;
        if header.len as usize > MAX_PAYLOAD_LEN {
            return Err(FrameError::TooLarge { len: header.len as usize, max: MAX_PAYLOAD_LEN });
        }
        Ok(header)
    }

    /// Header plus payload: how far to advance past this frame (even one of an unknown kind).
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.len as usize
    }

    fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0..2].copy_from_slice(&MAGIC.to_le_bytes());
        out[2..4].copy_from_slice(&self.version.to_le_bytes());
        out[4..6].copy_from_slice(&self.kind.to_le_bytes());
        out[6..10].copy_from_slice(&self.len.to_le_bytes());
    }
}

/// Appends `msg` as one binary frame to `out`. On error `out` is left as it was.
pub fn encode(msg: &Message, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    let written = match msg {
        Message::RouterCommand(body) => serde_json::to_writer(&mut *out, body),
        Message::RouterReply(body) => serde_json::to_writer(&mut *out, body),
        Message::RouterEvent(body) => serde_json::to_writer(&mut *out, body),
    };
    if let Err(e) = written {
        out.truncate(start);
        return Err(FrameError::Payload(e.to_string()));
    }
    let len = out.len() - start - HEADER_LEN;
    if len > MAX_PAYLOAD_LEN {
        out.truncate(start);
        return Err(FrameError::TooLarge { len, max: MAX_PAYLOAD_LEN });
    }
    let header = Header { version: SCHEMA_VERSION, kind: msg.kind().as_u16(), len: len as u32 };
    let slot: &mut [u8; HEADER_LEN] = (&mut out[start..start + HEADER_LEN])
        .try_into()
        .expect("the slice is HEADER_LEN long: reserved by the extend above");
    header.write(slot);
    Ok(())
}

/// Decodes exactly one binary frame: `buf` must hold it and nothing else.
pub fn decode(buf: &[u8]) -> Result<Message, FrameError> {
    let (msg, used) = decode_prefix(buf)?;
    match buf.len() - used {
        0 => Ok(msg),
        extra => Err(FrameError::TrailingBytes(extra)),
    }
}

/// Decodes the frame at the start of `buf`; returns it and the bytes it took. For a buffer
/// holding several frames back to back. [`FrameError::Truncated`] means wait for more.
pub fn decode_prefix(buf: &[u8]) -> Result<(Message, usize), FrameError> {
    let header = Header::parse(buf)?;
    let total = header.frame_len();
    let Some(payload) = buf.get(HEADER_LEN..total) else {
        return Err(FrameError::Truncated { needed: total, have: buf.len() });
    };
    let kind = MessageKind::from_u16(header.kind).ok_or(FrameError::UnknownKind(header.kind))?;
    let msg = match kind {
        MessageKind::RouterCommand => Message::RouterCommand(from_payload(payload)?),
        MessageKind::RouterReply => Message::RouterReply(from_payload(payload)?),
        MessageKind::RouterEvent => Message::RouterEvent(from_payload(payload)?),
    };
    Ok((msg, total))
}

fn from_payload<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, FrameError> {
    serde_json::from_slice(payload).map_err(|e| FrameError::Payload(e.to_string()))
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    v: u16,
    #[serde(flatten)]
    message: &'a Message,
}

/// Only the version of an envelope: read first, so that a message of another schema version
/// is refused as such rather than as whatever field it fails to parse.
#[derive(Deserialize)]
struct VersionProbe {
    #[serde(default)]
    v: Option<serde_json::Value>,
}

/// `msg` as one line of JSON: `{"v": SCHEMA_VERSION, "type": "...", ...}`.
pub fn encode_json(msg: &Message) -> Result<String, FrameError> {
    let text = serde_json::to_string(&EnvelopeOut { v: SCHEMA_VERSION, message: msg })
        .map_err(|e| FrameError::Payload(e.to_string()))?;
    if text.len() > MAX_PAYLOAD_LEN {
        return Err(FrameError::TooLarge { len: text.len(), max: MAX_PAYLOAD_LEN });
    }
    Ok(text)
}

/// Reads a JSON envelope; the `"v"` field is required (`null` counts as absent) and must be
/// this build's version.
pub fn decode_json(text: &str) -> Result<Message, FrameError> {
    if text.len() > MAX_PAYLOAD_LEN {
        return Err(FrameError::TooLarge { len: text.len(), max: MAX_PAYLOAD_LEN });
    }
    let probe: VersionProbe = serde_json::from_str(text).map_err(|e| FrameError::Payload(e.to_string()))?;
    check_version(json_version(probe.v.as_ref())?)?;
    serde_json::from_str(text).map_err(|e| FrameError::Payload(e.to_string()))
}

/// The schema version a JSON `"v"` field names. `None` (absent) is [`FrameError::MissingVersion`];
/// a value that is not an integer in `0..=65535` is a [`FrameError::Payload`] error. Text
/// protocols that make the field optional (the router's control socket) call this when it is
/// present, then [`check_version`].
pub fn json_version(v: Option<&serde_json::Value>) -> Result<u16, FrameError> {
    let v = v.ok_or(FrameError::MissingVersion)?;
    v.as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| FrameError::Payload(format!("\"v\" must be an integer from 0 to 65535, got {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_names_the_older_side() {
        let newer_peer = FrameError::VersionMismatch { ours: 1, theirs: 2 }.to_string();
        assert!(newer_peer.contains("upgrade this process"), "{newer_peer}");
        assert!(newer_peer.contains("v1") && newer_peer.contains("v2"), "{newer_peer}");
        let older_peer = FrameError::VersionMismatch { ours: 2, theirs: 1 }.to_string();
        assert!(older_peer.contains("upgrade the peer"), "{older_peer}");
    }

    #[test]
    fn header_round_trips_and_magic_reads_sm() {
        let h = Header { version: SCHEMA_VERSION, kind: 3, len: 77 };
        let mut raw = [0u8; HEADER_LEN];
        h.write(&mut raw);
        assert_eq!(&raw[..2], b"SM");
        assert_eq!(Header::parse(&raw), Ok(h));
        assert_eq!(h.frame_len(), HEADER_LEN + 77);
    }
}
