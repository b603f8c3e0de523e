//! WebRTC data channels for one transport: SCTP over DTLS (RFC 8261, 8831) and the Data
//! Channel Establishment Protocol (DCEP, RFC 8832).
//!
//! The SCTP state machine is `sctp-proto` (sans-IO, the one str0m uses); this module holds
//! one association per transport and the data channel layer on top of it: DCEP, labels,
//! payload protocol identifiers (PPIDs) and the limits.
//!
//! ```text
//! DTLS application data ─► SctpTransport::handle_packet ─► sctp-proto association
//!      ├─ PPID 50 (DCEP) ─► parse_dcep ─► OPEN: accept, ACK │ ACK: our channel is open
//!      ├─ PPID 51/56 (text) ─► SctpEvent::Text { label, text }
//!      └─ PPID 53/57 (binary), anything malformed ─► SctpEvent::Dropped (counted by the engine)
//! open_channel / send_text ─► association ─► poll_transmit ─► DTLS application data
//! ```
//!
//! The router is always the DTLS server, so the browser (the DTLS client) starts the SCTP
//! association (INIT to port 5000, RFC 8841); we only accept. Channels we open take ODD
//! stream ids (RFC 8832 §6: the DTLS server uses odd ones), and are ordered and reliable,
//! which is what the 100ms SDK expects of its `ion-sfu` channel. Messages are at most
//! [`MAX_MESSAGE_SIZE`] bytes both ways. Time is always an argument.
//!
//! # Example: the DCEP codec
//!
//! ```
//! use router_engine::sctp::{DcepMessage, DcepOpen, parse_dcep};
//!
//! let open = DcepOpen::reliable_ordered("ion-sfu");
//! let mut buf = [0u8; 64];
//! let n = open.write(&mut buf).unwrap();
//! assert_eq!(parse_dcep(&buf[..n]), Ok(DcepMessage::Open(open)));
//! assert!(parse_dcep(&buf[..n - 1]).is_err()); // truncated: a typed error, never a panic
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use sctp_proto::{
    Association, AssociationHandle, DatagramEvent, Endpoint, EndpointConfig, Event as ProtoEvent, Payload,
    PayloadProtocolIdentifier as Ppi, ReliabilityType, ServerConfig, StreamEvent, TransportConfig,
};
use tracing::{debug, trace};

/// The SCTP port of both ends (the SDP `a=sctp-port` default, which we always signal).
pub const SCTP_PORT: u16 = 5000;

/// The largest data channel message, sent or received (the SDP `a=max-message-size` we signal;
/// Chrome's own limit).
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024;

/// Channels per transport, from both sides together. A WebRTC client of ours uses one.
pub const MAX_CHANNELS: usize = 64;

/// User data per SCTP DATA chunk. With the SCTP headers (28 bytes) and a DTLS 1.2 AES-GCM
/// record (37 bytes) a packet stays under dimpl's MTU of 1200.
const MAX_SCTP_PAYLOAD: u32 = 1100;

/// Received application data waiting for its transport to be verified, at most.
pub const MAX_EARLY_PACKETS: usize = 8;

/// sctp-proto routes by address; there is one peer per endpoint, so any fixed one will do.
const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), SCTP_PORT);

// ---------------------------------------------------------------- DCEP codec

/// DCEP message type of DATA_CHANNEL_OPEN.
pub const DCEP_OPEN: u8 = 0x03;
/// DCEP message type of DATA_CHANNEL_ACK.
pub const DCEP_ACK: u8 = 0x02;
/// The fixed part of DATA_CHANNEL_OPEN before label and protocol.
const DCEP_OPEN_HEADER: usize = 12;

/// Channel types of RFC 8832 §5.1: the high bit means unordered.
pub const CHANNEL_RELIABLE: u8 = 0x00;
pub const CHANNEL_PARTIAL_RELIABLE_REXMIT: u8 = 0x01;
pub const CHANNEL_PARTIAL_RELIABLE_TIMED: u8 = 0x02;
const CHANNEL_UNORDERED: u8 = 0x80;

/// Why a DCEP message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcepError {
    #[error("empty DCEP message")]
    Empty,
    #[error("unknown DCEP message type {0:#04x}")]
    UnknownType(u8),
    #[error("DATA_CHANNEL_OPEN shorter than its 12-byte header")]
    Truncated,
    #[error("DCEP lengths say {expected} bytes, the message has {actual}")]
    LengthMismatch { expected: usize, actual: usize },
    #[error("unknown data channel type {0:#04x}")]
    UnknownChannelType(u8),
    #[error("label or protocol is not UTF-8")]
    NotUtf8,
    #[error("label or protocol longer than 65535 bytes")]
    TooLong,
    #[error("output buffer too small: {needed} bytes needed")]
    BufferTooSmall { needed: usize },
}

/// A DATA_CHANNEL_OPEN, viewing the bytes it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DcepOpen<'a> {
    /// One of the `CHANNEL_*` types, with 0x80 set for unordered.
    pub channel_type: u8,
    pub priority: u16,
    /// Retransmissions or milliseconds for the partially reliable types; ignored otherwise.
    pub reliability: u32,
    pub label: &'a str,
    pub protocol: &'a str,
}

/// A parsed DCEP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DcepMessage<'a> {
    Open(DcepOpen<'a>),
    Ack,
}

impl<'a> DcepOpen<'a> {
    /// What the router opens: ordered, reliable, normal priority (256, RFC 8831 §6.4), no
    /// subprotocol.
    pub fn reliable_ordered(label: &'a str) -> DcepOpen<'a> {
        DcepOpen { channel_type: CHANNEL_RELIABLE, priority: 256, reliability: 0, label, protocol: "" }
    }

    pub fn ordered(&self) -> bool {
        self.channel_type & CHANNEL_UNORDERED == 0
    }

    /// The sctp-proto reliability of this channel type.
    pub fn reliability_type(&self) -> ReliabilityType {
        match self.channel_type & !CHANNEL_UNORDERED {
            CHANNEL_PARTIAL_RELIABLE_REXMIT => ReliabilityType::Rexmit,
            CHANNEL_PARTIAL_RELIABLE_TIMED => ReliabilityType::Timed,
            _ => ReliabilityType::Reliable,
        }
    }

    pub fn encoded_len(&self) -> usize {
        DCEP_OPEN_HEADER + self.label.len() + self.protocol.len()
    }

    /// Writes the message into `out`; returns its length.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, DcepError> {
        let label_len = u16::try_from(self.label.len()).map_err(|_| DcepError::TooLong)?;
        let protocol_len = u16::try_from(self.protocol.len()).map_err(|_| DcepError::TooLong)?;
        let needed = self.encoded_len();
        if out.len() < needed {
            return Err(DcepError::BufferTooSmall { needed });
        }
        out[0] = DCEP_OPEN;
        out[1] = self.channel_type;
        out[2..4].copy_from_slice(&self.priority.to_be_bytes());
        out[4..8].copy_from_slice(&self.reliability.to_be_bytes());
        out[8..10].copy_from_slice(&label_len.to_be_bytes());
        out[10..12].copy_from_slice(&protocol_len.to_be_bytes());
        let label_end = DCEP_OPEN_HEADER + self.label.len();
        out[DCEP_OPEN_HEADER..label_end].copy_from_slice(self.label.as_bytes());
        out[label_end..needed].copy_from_slice(self.protocol.as_bytes());
        Ok(needed)
    }
}

/// Writes a DATA_CHANNEL_ACK (one byte) into `out`.
pub fn write_ack(out: &mut [u8]) -> Result<usize, DcepError> {
    let first = out.first_mut().ok_or(DcepError::BufferTooSmall { needed: 1 })?;
    *first = DCEP_ACK;
    Ok(1)
}

/// Parses one DCEP message (the payload of a PPID 50 message). Strict: lengths must add up
/// exactly, the channel type must be one RFC 8832 defines, label and protocol must be UTF-8.
pub fn parse_dcep(buf: &[u8]) -> Result<DcepMessage<'_>, DcepError> {
    match *buf.first().ok_or(DcepError::Empty)? {
        DCEP_ACK if buf.len() == 1 => Ok(DcepMessage::Ack),
        DCEP_ACK => Err(DcepError::LengthMismatch { expected: 1, actual: buf.len() }),
        DCEP_OPEN => {
            if buf.len() < DCEP_OPEN_HEADER {
                return Err(DcepError::Truncated);
            }
            let channel_type = buf[1];
            if !matches!(
                channel_type & !CHANNEL_UNORDERED,
                CHANNEL_RELIABLE | CHANNEL_PARTIAL_RELIABLE_REXMIT | CHANNEL_PARTIAL_RELIABLE_TIMED
            ) {
                return Err(DcepError::UnknownChannelType(channel_type));
            }
            let priority = u16::from_be_bytes([buf[2], buf[3]]);
            let reliability = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
            let label_len = usize::from(u16::from_be_bytes([buf[8], buf[9]]));
            let protocol_len = usize::from(u16::from_be_bytes([buf[10], buf[11]]));
            let expected = DCEP_OPEN_HEADER + label_len + protocol_len;
            if buf.len() != expected {
                return Err(DcepError::LengthMismatch { expected, actual: buf.len() });
            }
            let label_end = DCEP_OPEN_HEADER + label_len;
            let label = std::str::from_utf8(&buf[DCEP_OPEN_HEADER..label_end]).map_err(|_| DcepError::NotUtf8)?;
            let protocol = std::str::from_utf8(&buf[label_end..]).map_err(|_| DcepError::NotUtf8)?;
            Ok(DcepMessage::Open(DcepOpen { channel_type, priority, reliability, label, protocol }))
        }
        other => Err(DcepError::UnknownType(other)),
    }
}

// ---------------------------------------------------------------- the association

/// Something the data channel layer reports to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SctpEvent {
    /// A channel is usable: ours was acknowledged, or the peer's was accepted.
    ChannelOpened { label: String },
    /// A text message arrived.
    Text { label: String, text: String },
    /// Input that was dropped, for the engine's counters.
    Dropped(SctpDrop),
}

/// Why received data was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SctpDrop {
    /// Not an SCTP packet of our association (bad checksum, truncated, unknown tag, ...).
    Packet,
    /// A malformed or unexpected DCEP message.
    Dcep,
    /// A binary message (PPID 53 or 57): the router's channels carry text only.
    Binary,
    /// Text that is not UTF-8, an unknown PPID, or data on a stream with no channel.
    Message,
    /// A DATA_CHANNEL_OPEN over [`MAX_CHANNELS`].
    TooManyChannels,
}

/// Why a channel could not be opened or a message not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SctpError {
    #[error("data channel {0} is not open")]
    NotOpen(String),
    #[error("message of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("too many data channels on this transport (at most {MAX_CHANNELS})")]
    TooManyChannels,
    #[error("label longer than 65535 bytes")]
    LabelTooLong,
    #[error("SCTP: {0}")]
    Proto(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelState {
    /// We sent DATA_CHANNEL_OPEN; ordered, so we may already send (RFC 8832 §6).
    AwaitAck,
    Open,
}

#[derive(Debug)]
struct Channel {
    stream: u16,
    label: String,
    state: ChannelState,
}

/// The SCTP association and data channels of one transport.
pub struct SctpTransport {
    endpoint: Endpoint,
    assoc: Option<(AssociationHandle, Association)>,
    established: bool,
    channels: Vec<Channel>,
    /// Labels to open once the association is up.
    wanted: Vec<String>,
    events: VecDeque<SctpEvent>,
    /// The next odd stream id to try for a channel of ours.
    next_stream: u16,
}

impl std::fmt::Debug for SctpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SctpTransport")
            .field("established", &self.established)
            .field("channels", &self.channels)
            .field("wanted", &self.wanted)
            .finish()
    }
}

impl Default for SctpTransport {
    fn default() -> Self {
        SctpTransport::new()
    }
}

impl SctpTransport {
    pub fn new() -> SctpTransport {
        let mut endpoint_config = EndpointConfig::new();
        endpoint_config.max_payload_size(MAX_SCTP_PAYLOAD);
        let transport = TransportConfig::default()
            .with_max_send_message_size(MAX_MESSAGE_SIZE as u32)
            .with_max_receive_message_size(MAX_MESSAGE_SIZE as u32)
            .with_max_num_inbound_streams(1024)
            .with_max_num_outbound_streams(1024)
            .with_local_port(SCTP_PORT)
            .with_remote_port(SCTP_PORT);
        let mut server = ServerConfig::new();
        server.transport = Arc::new(transport);
        SctpTransport {
            endpoint: Endpoint::new(Arc::new(endpoint_config), Some(Arc::new(server))),
            assoc: None,
            established: false,
            channels: Vec::new(),
            wanted: Vec::new(),
            events: VecDeque::new(),
            next_stream: 1,
        }
    }

    /// Whether the association is up (channels can be opened).
    pub fn is_established(&self) -> bool {
        self.established
    }

    /// Whether a channel with this label can carry messages.
    pub fn is_open(&self, label: &str) -> bool {
        self.established && self.channels.iter().any(|c| c.label == label)
    }

    /// Feeds one SCTP packet (the plaintext of one DTLS application data record).
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        let Some((handle, event)) = self.endpoint.handle(now, PEER, None, None, packet.to_vec().into()) else {
            // Checksum, truncation, an unknown verification tag, or an INIT once we have an
            // association: sctp-proto drops them all.
            self.events.push_back(SctpEvent::Dropped(SctpDrop::Packet));
            return;
        };
        match event {
            DatagramEvent::NewAssociation(assoc) => {
                if self.assoc.is_some() {
                    self.events.push_back(SctpEvent::Dropped(SctpDrop::Packet));
                    return;
                }
                debug!("SCTP association accepted");
                // One association per transport (RFC 8841); retransmitted INITs still reach it
                // by their initiate tag.
                self.endpoint.reject_new_associations();
                self.assoc = Some((handle, assoc));
            }
            DatagramEvent::AssociationEvent(ev) => match &mut self.assoc {
                Some((h, assoc)) if *h == handle => assoc.handle_event(ev),
                _ => self.events.push_back(SctpEvent::Dropped(SctpDrop::Packet)),
            },
        }
        self.process();
    }

    /// Runs SCTP timers (retransmission, delayed SACK). Spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, assoc)) = &mut self.assoc
            && assoc.poll_timeout().is_some_and(|t| t <= now)
        {
            assoc.handle_timeout(now);
            self.process();
        }
    }

    /// When [`SctpTransport::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.assoc.as_ref().and_then(|(_, a)| a.poll_timeout())
    }

    /// Hands every SCTP packet to send to `send` (which wraps it in DTLS).
    pub fn poll_transmit(&mut self, now: Instant, send: &mut dyn FnMut(&[u8])) {
        while let Some(t) = self.endpoint.poll_transmit() {
            if let Payload::RawEncode(packets) = t.payload {
                packets.iter().for_each(|p| send(p));
            }
        }
        let Some((_, assoc)) = &mut self.assoc else { return };
        while let Some(t) = assoc.poll_transmit(now) {
            if let Payload::RawEncode(packets) = t.payload {
                packets.iter().for_each(|p| send(p));
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<SctpEvent> {
        self.events.pop_front()
    }

    /// Opens a channel with this label now if the association is up, else when it comes up.
    /// A channel with this label, opened by either side or already asked for, satisfies it.
    pub fn open_channel(&mut self, label: &str) -> Result<(), SctpError> {
        if label.len() > usize::from(u16::MAX) {
            return Err(SctpError::LabelTooLong);
        }
        if self.channels.iter().any(|c| c.label == label) || self.wanted.iter().any(|l| l == label) {
            return Ok(());
        }
        if self.channels.len() + self.wanted.len() >= MAX_CHANNELS {
            return Err(SctpError::TooManyChannels);
        }
        if self.established {
            self.open_now(label)
        } else {
            self.wanted.push(label.to_owned());
            Ok(())
        }
    }

    /// Sends one text message on the channel with this label.
    pub fn send_text(&mut self, label: &str, text: &str) -> Result<(), SctpError> {
        if text.len() > MAX_MESSAGE_SIZE {
            return Err(SctpError::TooLarge { len: text.len(), max: MAX_MESSAGE_SIZE });
        }
        let not_open = || SctpError::NotOpen(label.to_owned());
        if !self.established {
            return Err(not_open());
        }
        let stream = self.channels.iter().find(|c| c.label == label).ok_or_else(not_open)?.stream;
        let (_, assoc) = self.assoc.as_mut().ok_or_else(not_open)?;
        let mut s = assoc.stream(stream).map_err(|_| not_open())?;
        // An empty message is sent as one zero byte with its own PPID (RFC 8831 §6.6).
        let result = if text.is_empty() {
            s.write_with_ppi(&[0], Ppi::StringEmpty)
        } else {
            s.write_with_ppi(text.as_bytes(), Ppi::String)
        };
        result.map(|_| ()).map_err(|e| SctpError::Proto(e.to_string()))
    }

    fn open_now(&mut self, label: &str) -> Result<(), SctpError> {
        let (_, assoc) = self.assoc.as_mut().ok_or_else(|| SctpError::NotOpen(label.to_owned()))?;
        // Odd ids: ours as the DTLS server. Skip ids in use; 65535 is reserved.
        let mut id = self.next_stream;
        let mut stream = loop {
            if !self.channels.iter().any(|c| c.stream == id) {
                match assoc.open_stream(id, Ppi::Dcep) {
                    Ok(s) => break s,
                    Err(sctp_proto::Error::ErrStreamAlreadyExist | sctp_proto::Error::ErrStreamResetPending) => {}
                    Err(e) => return Err(SctpError::Proto(e.to_string())),
                }
            }
            id = if id >= 65533 { 1 } else { id + 2 };
            if id == self.next_stream {
                return Err(SctpError::TooManyChannels);
            }
        };
        self.next_stream = if id >= 65533 { 1 } else { id + 2 };
        let open = DcepOpen::reliable_ordered(label);
        let mut buf = vec![0u8; open.encoded_len()];
        let n = open.write(&mut buf).map_err(|_| SctpError::LabelTooLong)?;
        stream.write_with_ppi(&buf[..n], Ppi::Dcep).map_err(|e| SctpError::Proto(e.to_string()))?;
        debug!(label, stream = id, "data channel opening");
        self.channels.push(Channel { stream: id, label: label.to_owned(), state: ChannelState::AwaitAck });
        Ok(())
    }

    /// Moves endpoint events, association events and received messages along.
    fn process(&mut self) {
        let Some((handle, assoc)) = &mut self.assoc else { return };
        while let Some(e) = assoc.poll_endpoint_event() {
            if let Some(back) = self.endpoint.handle_event(*handle, e) {
                assoc.handle_event(back);
            }
        }
        let mut readable: Vec<u16> = Vec::new();
        let mut connected = false;
        while let Some(ev) = assoc.poll() {
            match ev {
                ProtoEvent::Connected => connected = true,
                ProtoEvent::Stream(StreamEvent::Opened { id } | StreamEvent::Readable { id })
                    if !readable.contains(&id) =>
                {
                    readable.push(id);
                }
                ProtoEvent::Stream(StreamEvent::Finished { id }) => {
                    // The peer reset the stream: its channel is closed (RFC 8831 §6.7).
                    self.channels.retain(|c| c.stream != id);
                }
                ProtoEvent::AssociationLost { reason } | ProtoEvent::HandshakeFailed { reason } => {
                    debug!(%reason, "SCTP association lost");
                    self.established = false;
                    self.channels.clear();
                }
                _ => {}
            }
        }
        // Streams the peer opened sit in an accept queue; empty it (we track them ourselves).
        while assoc.accept_stream().is_some() {}
        if connected {
            debug!("SCTP association established");
            self.established = true;
            for label in std::mem::take(&mut self.wanted) {
                if let Err(e) = self.open_now(&label) {
                    debug!(label, error = %e, "data channel open failed");
                }
            }
        }
        for id in readable {
            self.read_stream(id);
        }
    }

    fn read_stream(&mut self, id: u16) {
        loop {
            let Some((_, assoc)) = &mut self.assoc else { return };
            let Ok(mut stream) = assoc.stream(id) else { return };
            let chunks = match stream.read_sctp() {
                Ok(Some(c)) => c,
                Ok(None) | Err(_) => return,
            };
            let mut data = vec![0u8; chunks.len()];
            // The buffer has exactly the message's length, so a short read cannot happen;
            // a failure anyway drops just this message.
            if chunks.read(&mut data).is_err() {
                self.events.push_back(SctpEvent::Dropped(SctpDrop::Message));
                continue;
            }
            self.on_message(id, chunks.ppi, &data);
        }
    }

    fn on_message(&mut self, id: u16, ppi: Ppi, data: &[u8]) {
        match ppi {
            Ppi::Dcep => self.on_dcep(id, data),
            Ppi::String | Ppi::StringEmpty => {
                let Some(ch) = self.channels.iter().find(|c| c.stream == id) else {
                    self.events.push_back(SctpEvent::Dropped(SctpDrop::Message));
                    return;
                };
                let text = if ppi == Ppi::StringEmpty { Ok("") } else { std::str::from_utf8(data) };
                match text {
                    Ok(text) => {
                        trace!(label = ch.label, len = text.len(), "data channel text");
                        let label = ch.label.clone();
                        self.events.push_back(SctpEvent::Text { label, text: text.to_owned() });
                    }
                    Err(_) => self.events.push_back(SctpEvent::Dropped(SctpDrop::Message)),
                }
            }
            Ppi::Binary | Ppi::BinaryEmpty => self.events.push_back(SctpEvent::Dropped(SctpDrop::Binary)),
            _ => self.events.push_back(SctpEvent::Dropped(SctpDrop::Message)),
        }
    }

    fn on_dcep(&mut self, id: u16, data: &[u8]) {
        let msg = match parse_dcep(data) {
            Ok(m) => m,
            Err(e) => {
                trace!(stream = id, error = %e, "malformed DCEP");
                self.events.push_back(SctpEvent::Dropped(SctpDrop::Dcep));
                return;
            }
        };
        let existing = self.channels.iter().position(|c| c.stream == id);
        match (msg, existing) {
            (DcepMessage::Ack, Some(i)) if self.channels[i].state == ChannelState::AwaitAck => {
                self.channels[i].state = ChannelState::Open;
                debug!(label = self.channels[i].label, stream = id, "data channel open (acknowledged)");
                let label = self.channels[i].label.clone();
                self.events.push_back(SctpEvent::ChannelOpened { label });
            }
            (DcepMessage::Open(open), None) => {
                if self.channels.len() >= MAX_CHANNELS {
                    self.events.push_back(SctpEvent::Dropped(SctpDrop::TooManyChannels));
                    return;
                }
                let Some((_, assoc)) = &mut self.assoc else { return };
                let Ok(mut stream) = assoc.stream(id) else { return };
                // Send the way the opener asked for (the ACK itself goes ordered, §6).
                let _ = stream.set_reliability_params(!open.ordered(), open.reliability_type(), open.reliability);
                let mut ack = [0u8; 1];
                if write_ack(&mut ack).is_err() || stream.write_with_ppi(&ack, Ppi::Dcep).is_err() {
                    self.events.push_back(SctpEvent::Dropped(SctpDrop::Dcep));
                    return;
                }
                debug!(label = open.label, stream = id, "data channel open (accepted)");
                // The peer's channel satisfies a pending open of ours with the same label.
                self.wanted.retain(|l| l != open.label);
                self.channels.push(Channel { stream: id, label: open.label.to_owned(), state: ChannelState::Open });
                self.events.push_back(SctpEvent::ChannelOpened { label: open.label.to_owned() });
            }
            // An ACK for nothing we opened, or an OPEN on a stream already in use.
            _ => self.events.push_back(SctpEvent::Dropped(SctpDrop::Dcep)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_bytes(channel_type: u8, label: &str, protocol: &str) -> Vec<u8> {
        let open = DcepOpen { channel_type, priority: 256, reliability: 7, label, protocol };
        let mut buf = vec![0u8; open.encoded_len()];
        let n = open.write(&mut buf).expect("buffer sized by encoded_len");
        assert_eq!(n, buf.len());
        buf
    }

    #[test]
    fn open_round_trips_with_every_channel_type() {
        for t in [0x00, 0x01, 0x02, 0x80, 0x81, 0x82] {
            let buf = open_bytes(t, "ion-sfu", "json");
            let Ok(DcepMessage::Open(open)) = parse_dcep(&buf) else { panic!("parses: {buf:?}") };
            assert_eq!((open.channel_type, open.priority, open.reliability), (t, 256, 7));
            assert_eq!((open.label, open.protocol), ("ion-sfu", "json"));
            assert_eq!(open.ordered(), t & 0x80 == 0);
        }
    }

    #[test]
    fn open_has_the_rfc_8832_layout() {
        let buf = open_bytes(0x00, "ab", "c");
        assert_eq!(buf, [0x03, 0x00, 0x01, 0x00, 0, 0, 0, 7, 0, 2, 0, 1, b'a', b'b', b'c']);
        let mut ack = [0xff; 2];
        assert_eq!(write_ack(&mut ack), Ok(1));
        assert_eq!(ack[0], 0x02);
        assert_eq!(parse_dcep(&ack[..1]), Ok(DcepMessage::Ack));
    }

    #[test]
    fn empty_label_and_protocol_are_allowed() {
        let buf = open_bytes(0x00, "", "");
        assert_eq!(buf.len(), 12);
        assert!(matches!(parse_dcep(&buf), Ok(DcepMessage::Open(DcepOpen { label: "", protocol: "", .. }))));
    }

    #[test]
    fn malformed_dcep_is_a_typed_error() {
        let good = open_bytes(0x00, "label", "p");
        assert_eq!(parse_dcep(&[]), Err(DcepError::Empty));
        assert_eq!(parse_dcep(&[0x07]), Err(DcepError::UnknownType(7)));
        assert_eq!(parse_dcep(&[0x02, 0x00]), Err(DcepError::LengthMismatch { expected: 1, actual: 2 }));
        for n in 0..12 {
            let r = parse_dcep(&good[..n.max(1)]);
            assert!(matches!(r, Err(DcepError::Truncated)), "{n}: {r:?}");
        }
        for n in 12..good.len() {
            assert!(matches!(parse_dcep(&good[..n]), Err(DcepError::LengthMismatch { .. })), "{n}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(parse_dcep(&long), Err(DcepError::LengthMismatch { .. })));
        let mut bad_type = good.clone();
        bad_type[1] = 0x03;
        assert_eq!(parse_dcep(&bad_type), Err(DcepError::UnknownChannelType(3)));
        let mut bad_utf8 = good.clone();
        bad_utf8[12] = 0xff;
        assert_eq!(parse_dcep(&bad_utf8), Err(DcepError::NotUtf8));
        // Lengths near u16::MAX on a short buffer must not overflow or index out of bounds.
        let mut huge = good;
        huge[8..12].copy_from_slice(&[0xff; 4]);
        assert!(matches!(parse_dcep(&huge), Err(DcepError::LengthMismatch { expected: 131_082, .. })));
    }

    #[test]
    fn write_refuses_small_buffers_and_long_labels() {
        let open = DcepOpen::reliable_ordered("ion-sfu");
        let mut small = [0u8; 18];
        assert_eq!(open.write(&mut small), Err(DcepError::BufferTooSmall { needed: 19 }));
        assert_eq!(write_ack(&mut []), Err(DcepError::BufferTooSmall { needed: 1 }));
        let label = "x".repeat(70_000);
        let mut big = vec![0u8; 80_000];
        assert_eq!(DcepOpen::reliable_ordered(&label).write(&mut big), Err(DcepError::TooLong));
    }

    #[test]
    fn parse_never_panics_on_any_short_input() {
        // Every 1- and 2-byte input, and every 12-byte header with small lengths.
        for a in 0..=255u8 {
            let _ = parse_dcep(&[a]);
            for b in 0..=255u8 {
                let _ = parse_dcep(&[a, b]);
            }
        }
        for len in 0..16u8 {
            let mut buf = vec![0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, len, 0, len];
            buf.extend(std::iter::repeat_n(b'a', usize::from(len)));
            let _ = parse_dcep(&buf);
        }
    }

    #[test]
    fn garbage_packets_are_dropped_not_fatal() {
        let now = Instant::now();
        let mut sctp = SctpTransport::new();
        sctp.handle_packet(now, &[]);
        sctp.handle_packet(now, &[0x13, 0x88, 0x13, 0x88, 1, 2, 3, 4, 0, 0, 0, 0, 1, 0, 0, 4]);
        sctp.handle_packet(now, &[0xff; 1200]);
        let drops = std::iter::from_fn(|| sctp.poll_event()).filter(|e| *e == SctpEvent::Dropped(SctpDrop::Packet));
        assert_eq!(drops.count(), 3);
        assert!(!sctp.is_established());
        let mut sent = 0;
        sctp.poll_transmit(now, &mut |_| sent += 1);
        assert_eq!(sent, 0);
    }

    #[test]
    fn opens_wait_for_the_association_and_are_idempotent() {
        let mut sctp = SctpTransport::new();
        assert_eq!(sctp.open_channel("ion-sfu"), Ok(()));
        assert_eq!(sctp.open_channel("ion-sfu"), Ok(()));
        assert_eq!(sctp.wanted, ["ion-sfu"]);
        assert_eq!(sctp.send_text("ion-sfu", "x"), Err(SctpError::NotOpen("ion-sfu".into())));
        let big = "x".repeat(MAX_MESSAGE_SIZE + 1);
        assert_eq!(
            sctp.send_text("ion-sfu", &big),
            Err(SctpError::TooLarge { len: MAX_MESSAGE_SIZE + 1, max: MAX_MESSAGE_SIZE })
        );
        for i in 1..MAX_CHANNELS {
            assert_eq!(sctp.open_channel(&format!("c{i}")), Ok(()));
        }
        assert_eq!(sctp.open_channel("one-too-many"), Err(SctpError::TooManyChannels));
    }
}
