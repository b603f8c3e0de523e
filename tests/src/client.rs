//! A str0m peer connected to a router transport through the direct API (no SDP on either side).

use std::net::SocketAddr;
use std::time::Instant;

use schema::api::{ConnectParams, ConsumerInfo, ExtensionIds, MediaKind, TransportInfo};
use str0m::bwe::BweKind;
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::ice::IceCreds;
use str0m::media::{KeyframeRequestKind, MediaKind as StrKind, Mid, Pt};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// One RTP packet as the client received it (after SRTP, after RTX repair).
#[derive(Debug, Clone)]
pub struct Received {
    pub ssrc: u32,
    pub seq: u16,
    pub ext_seq: u64,
    pub timestamp: u32,
    pub pt: u8,
    pub marker: bool,
    pub payload: Vec<u8>,
    pub at: Instant,
}

/// A WebRTC client: str0m as the full, controlling ICE agent and DTLS client.
pub struct Client {
    pub rtc: Rtc,
    pub local: SocketAddr,
    /// How the client reaches the router: UDP, or ICE-TCP (the test does the RFC 4571 framing).
    pub protocol: Protocol,
    pub received: Vec<Received>,
    pub keyframe_requests: usize,
    /// The rid of each keyframe request, in order (`None` for a stream without one).
    pub keyframe_request_rids: Vec<Option<String>>,
    pub connected: bool,
    /// REMBs received (receiver-estimated maximum bitrate): when and how many bits per second.
    pub remb: Vec<(Instant, u64)>,
    /// Data channels that opened: (id, label).
    pub channels_open: Vec<(ChannelId, String)>,
    /// Data channel messages received: (id, binary, data).
    pub channel_data: Vec<(ChannelId, bool, Vec<u8>)>,
    timeout: Instant,
    /// Datagrams str0m produced while input was fed; sent on the next `poll`.
    outbox: Vec<(SocketAddr, Vec<u8>)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("local", &self.local).field("connected", &self.connected).finish()
    }
}

/// The extension ids str0m uses by default (`ExtensionMap::standard()`), as the router's
/// direct API wants them.
pub fn str0m_extensions() -> ExtensionIds {
    ExtensionIds {
        audio_level: Some(1),
        abs_send_time: Some(2),
        transport_cc: Some(3),
        mid: Some(4),
        rid: Some(10),
        repaired_rid: Some(11),
        video_orientation: Some(13),
    }
}

impl Client {
    pub fn new(local: SocketAddr, now: Instant) -> Client {
        Client::over(Protocol::Udp, local, now)
    }

    /// A client that reaches the router over `protocol` from `local` (for TCP, the local address
    /// of its connection to the router's ICE-TCP candidate).
    pub fn over(protocol: Protocol, local: SocketAddr, now: Instant) -> Client {
        let rtc = Rtc::builder().set_rtp_mode(true).build(now);
        Client {
            rtc,
            local,
            protocol,
            received: Vec::new(),
            keyframe_requests: 0,
            keyframe_request_rids: Vec::new(),
            connected: false,
            remb: Vec::new(),
            channels_open: Vec::new(),
            channel_data: Vec::new(),
            timeout: now,
            outbox: Vec::new(),
        }
    }

    /// Points the client at a router transport and starts ICE and DTLS. Returns what the
    /// router's `connect_transport` needs.
    pub fn connect_to(&mut self, info: &TransportInfo) -> ConnectParams {
        let local = self.local;
        match self.protocol {
            Protocol::Tcp => {
                let router = info
                    .candidates
                    .iter()
                    .find(|c| c.protocol == schema::api::IceProtocol::Tcp)
                    .expect("the router offers an ICE-TCP candidate")
                    .addr;
                let active = Candidate::builder().tcp().host(local).tcptype(TcpType::Active).build();
                self.rtc.add_local_candidate(active.expect("valid TCP host candidate"));
                let passive = Candidate::builder().tcp().host(router).tcptype(TcpType::Passive).build();
                self.rtc.add_remote_candidate(passive.expect("valid TCP host candidate"));
            }
            _ => {
                self.rtc.add_local_candidate(Candidate::host(local, "udp").expect("valid host candidate"));
                let router = info.udp_candidate().expect("the router offers a UDP candidate");
                self.rtc.add_remote_candidate(Candidate::host(router, "udp").expect("valid host candidate"));
            }
        }
        let mut api = self.rtc.direct_api();
        api.set_remote_ice_credentials(IceCreds { ufrag: info.ice_ufrag.clone(), pass: info.ice_pwd.clone() });
        api.set_remote_fingerprint(info.fingerprint.parse().expect("router fingerprint parses"));
        api.set_ice_controlling(true);
        api.start_dtls(true).expect("DTLS starts");
        let ufrag = api.local_ice_credentials().ufrag;
        let fingerprint = api.local_dtls_fingerprint().to_string();
        ConnectParams { fingerprint, ice_ufrag: Some(ufrag) }
    }

    pub fn timeout(&self) -> Instant {
        self.timeout
    }

    /// Feeds a datagram. str0m's RTP mode keeps only one received packet until the next
    /// `poll_output`, so its output is drained after every datagram.
    pub fn handle(&mut self, now: Instant, src: SocketAddr, data: &[u8]) {
        if let Ok(r) = Receive::new(self.protocol, src, self.local, data) {
            let _ = self.rtc.handle_input(Input::Receive(now, r));
            self.drain(now);
        }
    }

    /// Advances time and returns the datagrams to send.
    pub fn poll(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        let _ = self.rtc.handle_input(Input::Timeout(now));
        self.drain(now);
        std::mem::take(&mut self.outbox)
    }

    fn drain(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.timeout = t;
                    break;
                }
                Ok(Output::Transmit(t)) => self.outbox.push((t.destination, t.contents.to_vec())),
                Ok(Output::Event(e)) => self.on_event(now, e),
                Err(_) => {
                    self.timeout = now + std::time::Duration::from_millis(100);
                    break;
                }
            }
        }
    }

    fn on_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Connected => self.connected = true,
            Event::RtpPacket(p) => self.received.push(Received {
                ssrc: *p.header.ssrc,
                seq: p.header.sequence_number,
                ext_seq: *p.seq_no,
                timestamp: p.header.timestamp,
                pt: *p.header.payload_type,
                marker: p.header.marker,
                payload: p.payload.to_vec(),
                at: p.timestamp,
            }),
            Event::KeyframeRequest(r) => {
                self.keyframe_requests += 1;
                self.keyframe_request_rids.push(r.rid.map(|rid| rid.to_string()));
            }
            Event::EgressBitrateEstimate(BweKind::Remb { estimate, .. }) => {
                self.remb.push((now, estimate.as_u64()));
            }
            Event::ChannelOpen(id, label) => self.channels_open.push((id, label)),
            Event::ChannelData(d) => self.channel_data.push((d.id, d.binary, d.data)),
            _ => {}
        }
    }

    /// Starts SCTP as the association's initiator, as a browser (the DTLS client) does.
    pub fn start_sctp(&mut self) {
        self.rtc.direct_api().start_sctp(true);
    }

    /// Opens an ordered, reliable data channel with in-band negotiation (DCEP).
    pub fn open_channel(&mut self, label: &str) -> ChannelId {
        self.rtc.direct_api().create_data_channel(ChannelConfig { label: label.into(), ..Default::default() })
    }

    /// The id of the open channel with this label.
    pub fn channel_id(&self, label: &str) -> Option<ChannelId> {
        self.channels_open.iter().find(|(_, l)| l == label).map(|(id, _)| *id)
    }

    /// Sends a message on an open channel; false if str0m refused it.
    pub fn send_channel(&mut self, id: ChannelId, binary: bool, data: &[u8]) -> bool {
        self.rtc.channel(id).is_some_and(|mut c| c.write(binary, data).unwrap_or(false))
    }

    /// Text messages received on a channel, in order.
    pub fn texts_on(&self, id: ChannelId) -> Vec<String> {
        self.channel_data
            .iter()
            .filter(|(c, binary, _)| *c == id && !binary)
            .map(|(_, _, d)| String::from_utf8_lossy(d).into_owned())
            .collect()
    }

    /// Declares an outgoing track; returns (ssrc, rtx ssrc, payload type, rtx payload type).
    pub fn publish(&mut self, mid: &str, kind: MediaKind) -> Publication {
        let mid: Mid = mid.into();
        let (pt, rtx_pt) = self.payload_types(kind);
        let mut api = self.rtc.direct_api();
        let ssrc = api.new_ssrc();
        let rtx = if kind == MediaKind::Video { Some(api.new_ssrc()) } else { None };
        api.declare_media(mid, to_str0m(kind));
        api.declare_stream_tx(ssrc, rtx, mid, None);
        Publication {
            mid,
            ssrc: *ssrc,
            rtx_ssrc: rtx.map(|s| *s),
            pt,
            rtx_pt: if rtx.is_some() { rtx_pt } else { None },
        }
    }

    /// Declares an outgoing simulcast video track: one stream (own SSRC and RTX SSRC) per rid,
    /// in the given order.
    pub fn publish_simulcast(&mut self, mid: &str, rids: &[&str]) -> Vec<Publication> {
        let mid: Mid = mid.into();
        let (pt, rtx_pt) = self.payload_types(MediaKind::Video);
        let mut api = self.rtc.direct_api();
        api.declare_media(mid, StrKind::Video);
        rids.iter()
            .map(|rid| {
                let ssrc = api.new_ssrc();
                let rtx = api.new_ssrc();
                api.declare_stream_tx(ssrc, Some(rtx), mid, Some((*rid).into()));
                Publication { mid, ssrc: *ssrc, rtx_ssrc: Some(*rtx), pt, rtx_pt }
            })
            .collect()
    }

    /// The payload types str0m's default codec config uses for the kind's codec (Opus / VP8).
    pub fn payload_types(&self, kind: MediaKind) -> (u8, Option<u8>) {
        let codec = match kind {
            MediaKind::Audio => str0m::format::Codec::Opus,
            MediaKind::Video => str0m::format::Codec::Vp8,
        };
        self.payload_types_of(codec)
    }

    /// The payload types (media, RTX) of a codec in str0m's default codec config.
    pub fn payload_types_of(&self, codec: str0m::format::Codec) -> (u8, Option<u8>) {
        // The default config has Opus, VP8, VP9 and H.264; a test asks for one of them.
        let p = self.rtc.codec_config().find(|p| p.spec().codec == codec).expect("codec in str0m's default config");
        (*p.pt(), p.resend().map(|r| *r))
    }

    /// Sends one RTP packet on a publication.
    pub fn send(&mut self, publication: &Publication, now: Instant, seq: u64, ts: u32, marker: bool, payload: &[u8]) {
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx(&Ssrc::from(publication.ssrc)) else { return };
        let write = RtpWrite::new(Pt::from(publication.pt), SeqNo::from(seq), ts, now, payload.to_vec())
            .marker(marker)
            .ext_vals(ExtensionValues { audio_level: Some(-30), voice_activity: Some(true), ..Default::default() })
            .nackable(true);
        stream.write_rtp(write);
    }

    /// Declares an incoming track from a router consumer.
    pub fn subscribe(&mut self, mid: &str, info: &ConsumerInfo) {
        let mid: Mid = mid.into();
        let mut api = self.rtc.direct_api();
        // Transport-wide congestion feedback, as a browser sends: the router's bandwidth
        // estimate for this subscriber comes from it.
        api.enable_twcc_feedback();
        api.declare_media(mid, to_str0m(info.kind));
        api.expect_stream_rx(Ssrc::from(info.ssrc), info.rtx_ssrc.map(Ssrc::from), mid, None);
    }

    /// Asks the router for a keyframe of an incoming track (sends a PLI).
    pub fn request_keyframe(&mut self, info: &ConsumerInfo) {
        let mut api = self.rtc.direct_api();
        if let Some(rx) = api.stream_rx(&Ssrc::from(info.ssrc)) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
    }

    /// Packets received on one SSRC, in arrival order.
    pub fn received_on(&self, ssrc: u32) -> Vec<&Received> {
        self.received.iter().filter(|r| r.ssrc == ssrc).collect()
    }
}

/// An outgoing track of a client.
#[derive(Debug, Clone)]
pub struct Publication {
    pub mid: Mid,
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
    pub pt: u8,
    pub rtx_pt: Option<u8>,
}

fn to_str0m(kind: MediaKind) -> StrKind {
    match kind {
        MediaKind::Audio => StrKind::Audio,
        MediaKind::Video => StrKind::Video,
    }
}
