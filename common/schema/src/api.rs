//! The router's direct API: the parameters of the commands signaling sends (no SDP here), what
//! they return, the events a shard reports, and the errors. Plain serde data: the router's
//! control socket carries it as JSON lines, [`crate::frame`] carries it between processes, and
//! the engine (`router_engine`, which re-exports all of it) acts on it.
//!
//! ```
//! use schema::api::{ApiError, CloseReason, Event};
//! use schema::ids::TransportId;
//! let ev = Event::TransportClosed { transport: TransportId(7), reason: CloseReason::Requested };
//! let json = serde_json::to_string(&ev).unwrap();
//! assert_eq!(json, r#"{"event":"transport_closed","transport":7,"reason":"requested"}"#);
//! assert_eq!(ApiError::UnknownTransport(TransportId(7)).code(), "unknown_transport");
//! ```

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::codec::Codec;
pub use crate::extensions::ExtensionIds;
use crate::ids::{ConsumerId, ProducerId, TransportId};

/// What `create_transport` returns: everything signaling needs to write the router's half of
/// an SDP (ICE-lite credentials, the DTLS fingerprint and role, the router's host candidates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportInfo {
    pub id: TransportId,
    pub ice_ufrag: String,
    pub ice_pwd: String,
    /// Always true: the router only answers connectivity checks.
    pub ice_lite: bool,
    /// `sha-256 AB:CD:...`, as in an SDP `a=fingerprint` line.
    pub fingerprint: String,
    /// Always "server" (`a=setup:passive`): the client starts the DTLS handshake.
    pub dtls_role: String,
    /// The shard's addresses, as clients should reach them: UDP first, then ICE-TCP (RFC 6544
    /// passive), each for every announced address. Never empty: there is always a UDP one.
    pub candidates: Vec<IceCandidate>,
}

impl TransportInfo {
    /// The first UDP candidate: the address an SDP's m-line and `c=` line name.
    pub fn udp_candidate(&self) -> Option<SocketAddr> {
        self.candidates.iter().find(|c| c.protocol == IceProtocol::Udp).map(|c| c.addr)
    }
}

/// One of the router's host candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IceCandidate {
    pub protocol: IceProtocol,
    pub addr: SocketAddr,
}

impl IceCandidate {
    pub fn udp(addr: SocketAddr) -> IceCandidate {
        IceCandidate { protocol: IceProtocol::Udp, addr }
    }
    pub fn tcp(addr: SocketAddr) -> IceCandidate {
        IceCandidate { protocol: IceProtocol::Tcp, addr }
    }
}

/// How a candidate carries datagrams: as UDP datagrams, or over a TCP connection the client
/// opens, each datagram behind a 16-bit length (RFC 4571 framing, RFC 6544 passive candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IceProtocol {
    Udp,
    Tcp,
}

/// Parameters of `connect_transport`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectParams {
    /// The client's certificate fingerprint from its SDP, `sha-256 AB:CD:...`.
    pub fingerprint: String,
    /// The client's ICE username fragment; when given, checks must carry exactly it.
    #[serde(default)]
    pub ice_ufrag: Option<String>,
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Audio,
    Video,
}

/// Parameters of `produce`: one incoming track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceParams {
    pub kind: MediaKind,
    pub codec: Codec,
    pub payload_type: u8,
    pub clock_rate: u32,
    /// RTX (RFC 4588) payload type, when negotiated.
    #[serde(default)]
    pub rtx_payload_type: Option<u8>,
    /// The media SSRC when signaled (`a=ssrc`); otherwise learned from `mid`/`rid`.
    #[serde(default)]
    pub ssrc: Option<u32>,
    #[serde(default)]
    pub rtx_ssrc: Option<u32>,
    #[serde(default)]
    pub mid: Option<String>,
    #[serde(default)]
    pub rid: Option<String>,
    #[serde(default)]
    pub extensions: ExtensionIds,
    #[serde(default)]
    pub paused: bool,
    /// Simulcast: the spatial layers, lowest first (rid `q`, `h`, `f`), each its own RTP
    /// stream. When present they replace `ssrc`, `rtx_ssrc` and `rid`; at most three.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerParams>,
    /// Bandwidth allocation order among a subscriber's video: higher is served first
    /// (screenshare above the active speaker above the rest).
    #[serde(default)]
    pub priority: u8,
}

/// One simulcast layer of a producer: its rid (RID-based simulcast) or SSRCs (SSRC-based, the
/// `a=ssrc-group:SIM` order), or both.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LayerParams {
    #[serde(default)]
    pub rid: Option<String>,
    #[serde(default)]
    pub ssrc: Option<u32>,
    #[serde(default)]
    pub rtx_ssrc: Option<u32>,
}

/// Parameters of `consume`: send a producer's media on another transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumeParams {
    pub producer: ProducerId,
    /// Payload type on the subscriber's side; defaults to the producer's.
    #[serde(default)]
    pub payload_type: Option<u8>,
    /// RTX payload type on the subscriber's side; RTX is used for retransmissions if set.
    #[serde(default)]
    pub rtx_payload_type: Option<u8>,
    #[serde(default)]
    pub mid: Option<String>,
    #[serde(default)]
    pub extensions: ExtensionIds,
    #[serde(default)]
    pub paused: bool,
    /// The highest simulcast layer the subscriber wants (0 lowest); absent means the highest
    /// there is. Bandwidth allocation may forward less.
    #[serde(default)]
    pub preferred_layer: Option<u8>,
}

/// What `consume` returns: what signaling puts in the subscriber's SDP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    pub id: ConsumerId,
    pub producer: ProducerId,
    pub kind: MediaKind,
    pub codec: Codec,
    pub clock_rate: u32,
    pub ssrc: u32,
    pub payload_type: u8,
    pub rtx_ssrc: Option<u32>,
    pub rtx_payload_type: Option<u8>,
}

/// Why a transport was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Closed by a command.
    Requested,
    /// ICE consent expired: no valid check for the consent timeout (30 s by default).
    ConsentExpired,
    /// The client's certificate did not match the fingerprint it signaled.
    FingerprintMismatch,
    /// The DTLS handshake failed or the peer closed it.
    Dtls(String),
    /// The producer this consumer forwarded was closed.
    ProducerClosed,
    /// The transport this object belonged to was closed.
    TransportClosed,
}

/// Counters of one stream, reported in [`Event::Stats`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamStats {
    pub packets: u64,
    pub bytes: u64,
    pub packets_lost: i64,
    pub nacks: u64,
    pub retransmitted: u64,
    pub plis: u64,
    pub keyframes: u64,
}

/// Something that happened in the shard that the control plane should know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    TransportConnected {
        transport: TransportId,
        remote: SocketAddr,
    },
    TransportClosed {
        transport: TransportId,
        reason: CloseReason,
    },
    ProducerFirstPacket {
        producer: ProducerId,
        ssrc: u32,
    },
    KeyframeSeen {
        producer: ProducerId,
    },
    ProducerClosed {
        producer: ProducerId,
        reason: CloseReason,
    },
    ConsumerClosed {
        consumer: ConsumerId,
        reason: CloseReason,
    },
    Stats {
        producer: Option<ProducerId>,
        consumer: Option<ConsumerId>,
        stats: StreamStats,
    },
    /// A data channel is usable: one the router opened (the peer acknowledged it) or one the
    /// peer opened (the router acknowledged it).
    DataChannelOpened {
        transport: TransportId,
        label: String,
    },
    /// A text message arrived on a data channel. Binary messages are counted and dropped.
    DataChannelMessage {
        transport: TransportId,
        label: String,
        text: String,
    },
    /// A video consumer's layers changed: the layer forwarded (`current`), the one the
    /// bandwidth allocation grants (`target`), the one the subscriber asked for (`preferred`).
    /// `degraded` is true while the allocation grants less than asked (100ms's subscribe
    /// degradation). Layers are spatial indices, 0 the lowest; `None` is no layer.
    ConsumerLayersChanged {
        consumer: ConsumerId,
        preferred: Option<u8>,
        target: Option<u8>,
        current: Option<u8>,
        degraded: bool,
    },
    /// Which of a simulcast producer's layers some consumer may need (index 0 lowest), when
    /// that changes: the publisher can stop encoding the others.
    LayersNeeded {
        producer: ProducerId,
        needed: Vec<bool>,
    },
    /// The smoothed audio level (1–100) of every audio producer of the shard that is not
    /// silent, loudest first; sent every 500 ms while any is, and once empty when all fall
    /// silent.
    AudioLevels {
        levels: Vec<AudioLevel>,
    },
}

/// One entry of [`Event::AudioLevels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioLevel {
    pub producer: ProducerId,
    pub level: u8,
}

/// How a subscriber's link is doing, what `transport_link_stats` returns: from the
/// congestion feedback the subscriber sends (transport-cc), nothing before it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LinkStats {
    /// The bandwidth estimate toward the subscriber, bits per second (none before feedback).
    pub estimate_bps: Option<u64>,
    /// The share of packets lost in the last loss window the feedback could judge, 0 to 1.
    pub loss_fraction: f64,
    /// The round trip the feedback measured, milliseconds.
    pub rtt_ms: Option<u64>,
    /// Feedback packets handled so far.
    pub feedbacks: u64,
}

/// A consumer's layers and its subscriber's bandwidth estimate, what `consumer_layers` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConsumerLayers {
    pub preferred: Option<u8>,
    pub target: Option<u8>,
    pub current: Option<u8>,
    pub degraded: bool,
    /// The subscriber transport's bandwidth estimate, bits per second (none before feedback).
    pub estimate_bps: Option<u64>,
    /// Layer switches of this consumer so far.
    pub switches: u64,
    /// Which of the producer's layers are live (carrying frames, not just padding), lowest
    /// first; layers the producer does not have are false.
    #[serde(default)]
    pub live_layers: [bool; 3],
    /// Milliseconds this consumer went without any media packet although it wanted video, its
    /// bandwidth allowed some and the publisher sent some (gaps over 500 ms, counted whole).
    #[serde(default)]
    pub unserved_ms: u64,
}

/// Errors of the direct API (commands). Errors of packets never surface here: the engine drops
/// and counts them (its `Counters`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ApiError {
    #[error("unknown transport {0}")]
    UnknownTransport(TransportId),
    #[error("unknown producer {0}")]
    UnknownProducer(ProducerId),
    #[error("unknown consumer {0}")]
    UnknownConsumer(ConsumerId),
    #[error("invalid fingerprint: {0}")]
    BadFingerprint(String),
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    #[error("crypto setup failed: {0}")]
    Crypto(String),
    /// `send_data` on a label that has no open channel on the transport.
    #[error("data channel {0} is not open")]
    DataChannelNotOpen(String),
    /// A data channel message over the maximum message size.
    #[error("message of {len} bytes is over the data channel limit of {max} bytes")]
    MessageTooLarge { len: u64, max: u64 },
}

impl ApiError {
    /// The stable machine-readable code of this error, as the control socket reports it
    /// (`{"error": {"code": "unknown_transport", ...}}`).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownTransport(_) => "unknown_transport",
            ApiError::UnknownProducer(_) => "unknown_producer",
            ApiError::UnknownConsumer(_) => "unknown_consumer",
            ApiError::BadFingerprint(_) => "bad_fingerprint",
            ApiError::InvalidParams(_) => "invalid_params",
            ApiError::Crypto(_) => "crypto",
            ApiError::DataChannelNotOpen(_) => "data_channel_not_open",
            ApiError::MessageTooLarge { .. } => "message_too_large",
        }
    }
}
