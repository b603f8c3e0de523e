//! The shard engine: every transport, producer and consumer of one shard, and the packet path
//! between them. See the crate guide for the flow; this file is the wiring.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, trace};

use crate::api::*;
use crate::codec::{self, Codec};
use crate::dtls::{Certificate, DtlsFailure, DtlsOutput, DtlsState, Fingerprint};
use crate::ice::{IceCredentials, IceEvent, IceLite};
use crate::ids::{ConsumerId, FastMap, ProducerId, TransportId};
use crate::nack::NackGenerator;
use crate::rtx_cache::{ResendThrottle, RetransmissionCache, RtxCacheConfig};
use crate::sctp::{MAX_EARLY_PACKETS, SctpDrop, SctpError, SctpEvent, SctpTransport};
use crate::srtp::SrtpSession;
use crate::stats::ReceiveStats;
use crate::twcc::TwccReceiver;
use crate::{rtcp, rtp, stun};

/// Where the engine writes datagrams to send: the shell's send batch in production, a vector
/// in tests. The engine writes each datagram straight into `buffer()` (SRTP encrypts in place
/// there), then commits it.
pub trait Transmit {
    /// A buffer of at least [`MTU`] bytes for the next datagram.
    fn buffer(&mut self) -> &mut [u8];
    /// The first `len` bytes of the last `buffer()` go to `dst`.
    fn commit(&mut self, dst: SocketAddr, len: usize);
}

/// The largest datagram the engine writes.
pub const MTU: usize = 1500;

/// Collects transmits into owned buffers: for tests and simulations.
#[derive(Debug, Default)]
pub struct VecTransmit {
    scratch: Vec<u8>,
    pub sent: Vec<(SocketAddr, Vec<u8>)>,
}

impl Transmit for VecTransmit {
    fn buffer(&mut self) -> &mut [u8] {
        self.scratch.resize(MTU, 0);
        &mut self.scratch
    }
    fn commit(&mut self, dst: SocketAddr, len: usize) {
        self.sent.push((dst, self.scratch[..len].to_vec()));
    }
}

/// Packets the engine dropped, by reason. Bad input is counted, never fatal.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub unknown_kind: u64,
    pub stun_malformed: u64,
    pub stun_unknown_ufrag: u64,
    pub stun_rejected: u64,
    pub dtls_unknown_address: u64,
    pub dtls_failed: u64,
    pub srtp_unknown_address: u64,
    pub srtp_not_ready: u64,
    pub srtp_auth_failed: u64,
    pub srtp_replayed: u64,
    pub srtp_other: u64,
    pub rtp_malformed: u64,
    pub rtp_unknown_ssrc: u64,
    pub rtcp_malformed: u64,
    pub forwarded: u64,
    pub nacks_received: u64,
    pub nacks_sent: u64,
    pub retransmitted: u64,
    pub plis_received: u64,
    pub plis_sent: u64,
    pub plis_throttled: u64,
    pub transmit_too_large: u64,
    /// Application data that was not an SCTP packet of the transport's association.
    pub sctp_dropped: u64,
    /// Malformed or unexpected DCEP messages (RFC 8832).
    pub dcep_malformed: u64,
    /// Binary data channel messages: the router's channels carry text only.
    pub data_channel_binary_dropped: u64,
    /// Other data channel messages dropped: not UTF-8, unknown PPID, no channel, too many channels.
    pub data_channel_dropped: u64,
    pub data_channel_messages_in: u64,
    pub data_channel_messages_out: u64,
    /// SCTP packets DTLS refused to send.
    pub sctp_send_failed: u64,
}

struct Transport {
    ice: IceLite,
    dtls: DtlsState,
    srtp_out: Option<SrtpSession>,
    srtp_in: Option<SrtpSession>,
    /// Our SSRC in RTCP feedback sent on this transport.
    rtcp_ssrc: u32,
    /// Header extension ids the client uses on this transport (BUNDLE: one set per transport).
    in_ext: ExtensionIds,
    out_ext: ExtensionIds,
    /// Incoming SSRC → producer; `true` marks the RTX stream of that producer.
    ssrcs: FastMap<u32, (ProducerId, bool)>,
    producers: Vec<ProducerId>,
    consumers: Vec<ConsumerId>,
    twcc_in: TwccReceiver,
    /// Transport-wide sequence number of our next outgoing RTP packet.
    twcc_out_seq: u16,
    next_rtcp: Instant,
    connected: bool,
    remote_addrs: Vec<SocketAddr>,
    /// Data channels: the SCTP association over DTLS application data.
    sctp: SctpTransport,
    /// SCTP packets that arrived before the transport was verified (fingerprint unknown).
    sctp_early: Vec<Vec<u8>>,
}

impl Transport {
    fn remote(&self) -> Option<SocketAddr> {
        self.ice.nominated()
    }
}

struct Producer {
    id: ProducerId,
    transport: TransportId,
    params: ProduceParams,
    ssrc: Option<u32>,
    rtx_ssrc: Option<u32>,
    consumers: Vec<ConsumerId>,
    cache: RetransmissionCache,
    nack: NackGenerator,
    recv: ReceiveStats,
    stats: StreamStats,
    last_pli: Option<Instant>,
    got_first_packet: bool,
    /// The publisher's last sender report: NTP time, RTP time, when it arrived. Consumers'
    /// sender reports are derived from it, so subscribers keep the publisher's A/V sync.
    last_sr: Option<(u64, u32, Instant)>,
}

struct Consumer {
    id: ConsumerId,
    transport: TransportId,
    producer: ProducerId,
    kind: MediaKind,
    codec: Codec,
    clock_rate: u32,
    ssrc: u32,
    payload_type: u8,
    rtx_ssrc: Option<u32>,
    rtx_payload_type: Option<u8>,
    mid: Option<String>,
    paused: bool,
    /// Forwarding state: `None` until the first packet (a keyframe for video) is sent.
    sync: Option<SeqSync>,
    /// The last packet sent, to continue numbering across pause/resume.
    last_out: Option<(u16, u32, Instant)>,
    rtx_seq: u16,
    /// One answer per lost packet per round trip, however often the subscriber NACKs it.
    resend: ResendThrottle,
    packets: u64,
    bytes: u64,
    stats: StreamStats,
}

/// How a consumer's numbering relates to its producer's.
#[derive(Clone, Copy)]
struct SeqSync {
    /// The producer's sequence number where this consumer started.
    start_seq: u16,
    seq_offset: u16,
    ts_offset: u32,
}

/// One shard's media engine. See the crate documentation.
pub struct Engine {
    cfg: EngineConfig,
    cert: Certificate,
    dtls_config: Arc<dimpl::Config>,
    next_id: u32,
    transports: FastMap<TransportId, Transport>,
    producers: FastMap<ProducerId, Producer>,
    consumers: FastMap<ConsumerId, Consumer>,
    by_ufrag: std::collections::HashMap<String, TransportId>,
    by_addr: FastMap<SocketAddr, TransportId>,
    events: VecDeque<Event>,
    counters: Counters,
    dtls_scratch: Vec<u8>,
    rtcp_scratch: Vec<u8>,
    nack_scratch: Vec<u16>,
    rtcp_keyframes: Vec<ProducerId>,
    rtcp_resends: Vec<(ConsumerId, u16)>,
    next_tick: Instant,
    next_stats: Instant,
    /// Transports with SCTP output to flush (from commands, or a transport just verified).
    sctp_dirty: Vec<TransportId>,
    /// When the dirty transports should be flushed; `poll_timeout` returns no later.
    sctp_wake: Option<Instant>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("transports", &self.transports.len())
            .field("producers", &self.producers.len())
            .field("consumers", &self.consumers.len())
            .finish()
    }
}

/// How far behind the newest packet a consumer's start mark trails (see `forward_media`).
const START_MARK_LAG: i16 = 8192;

/// How often the engine wakes for housekeeping when nothing else is due (NACK, TWCC, RTCP).
const TICK: Duration = Duration::from_millis(10);

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // A failure of the system RNG leaves zeros; SSRC collisions are resolved by the
    // receiver, so this is not a safety issue.
    let _ = aws_lc_rs::rand::fill(&mut b);
    u32::from_be_bytes(b)
}

impl Engine {
    /// A new engine with a fresh certificate. `now` anchors its clocks.
    pub fn new(cfg: EngineConfig, now: Instant) -> Result<Engine, ApiError> {
        let cert = Certificate::generate().map_err(ApiError::Crypto)?;
        let dtls_config = crate::dtls::server_config().map_err(ApiError::Crypto)?;
        Ok(Engine {
            cfg,
            cert,
            dtls_config,
            next_id: 1,
            transports: FastMap::default(),
            producers: FastMap::default(),
            consumers: FastMap::default(),
            by_ufrag: Default::default(),
            by_addr: FastMap::default(),
            events: VecDeque::new(),
            counters: Counters::default(),
            dtls_scratch: vec![0; 2048],
            rtcp_scratch: vec![0; MTU],
            nack_scratch: Vec::with_capacity(64),
            rtcp_keyframes: Vec::new(),
            rtcp_resends: Vec::new(),
            next_tick: now,
            next_stats: now + Duration::from_secs(1),
            sctp_dirty: Vec::new(),
            sctp_wake: None,
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Sets the candidate address (when the shell learns its bound port).
    pub fn set_candidate(&mut self, addr: SocketAddr) {
        self.cfg.candidate = addr;
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.cert.fingerprint
    }

    fn next_id(&mut self) -> u32 {
        let id = self.next_id;
        // 24 bits of counter per shard: 16 M objects before wrapping, ample for one shard's life.
        self.next_id = (self.next_id + 1) & 0x00ff_ffff;
        if self.next_id == 0 {
            self.next_id = 1;
        }
        (u32::from(self.cfg.shard) << 24) | id
    }

    // ---------------------------------------------------------------- commands

    /// Creates a transport: ICE-lite credentials, DTLS server, the shard's candidate.
    pub fn create_transport(&mut self, now: Instant) -> Result<TransportInfo, ApiError> {
        let creds = IceCredentials::random().map_err(|e| ApiError::Crypto(e.to_string()))?;
        let id = TransportId(self.next_id());
        let mut ice = IceLite::new(creds.clone(), now);
        ice.set_consent_timeout(self.cfg.consent_timeout);
        let transport = Transport {
            ice,
            dtls: DtlsState::new(self.dtls_config.clone(), &self.cert, now),
            srtp_out: None,
            srtp_in: None,
            rtcp_ssrc: random_u32(),
            in_ext: ExtensionIds::default(),
            out_ext: ExtensionIds::default(),
            ssrcs: FastMap::default(),
            producers: Vec::new(),
            consumers: Vec::new(),
            twcc_in: TwccReceiver::new(),
            twcc_out_seq: 0,
            next_rtcp: now + self.cfg.rtcp_interval,
            connected: false,
            remote_addrs: Vec::new(),
            sctp: SctpTransport::new(),
            sctp_early: Vec::new(),
        };
        self.by_ufrag.insert(creds.ufrag.clone(), id);
        self.transports.insert(id, transport);
        debug!(transport = %id, "transport created");
        Ok(TransportInfo {
            id,
            ice_ufrag: creds.ufrag,
            ice_pwd: creds.pwd,
            ice_lite: true,
            fingerprint: self.cert.fingerprint.to_string(),
            dtls_role: "server".into(),
            candidate: self.cfg.candidate,
        })
    }

    /// Gives a transport the client's DTLS fingerprint (and optionally its ICE ufrag).
    pub fn connect_transport(&mut self, id: TransportId, params: &ConnectParams) -> Result<(), ApiError> {
        let fp = Fingerprint::parse(&params.fingerprint).map_err(ApiError::BadFingerprint)?;
        let t = self.transports.get_mut(&id).ok_or(ApiError::UnknownTransport(id))?;
        if let Some(ufrag) = &params.ice_ufrag {
            t.ice.set_remote_ufrag(ufrag.clone());
        }
        if let Some(out) = t.dtls.set_remote_fingerprint(fp) {
            self.on_dtls_output(id, out);
        }
        Ok(())
    }

    /// Declares an incoming track on a transport.
    pub fn produce(&mut self, transport: TransportId, params: ProduceParams) -> Result<ProducerId, ApiError> {
        if params.ssrc.is_none() && params.mid.is_none() {
            return Err(ApiError::InvalidParams("a producer needs an ssrc or a mid".into()));
        }
        if params.clock_rate == 0 || params.payload_type > 127 {
            return Err(ApiError::InvalidParams("bad clock rate or payload type".into()));
        }
        let id = ProducerId(self.next_id());
        let t = self.transports.get_mut(&transport).ok_or(ApiError::UnknownTransport(transport))?;
        for (ssrc, rtx) in [(params.ssrc, false), (params.rtx_ssrc, true)] {
            if let Some(ssrc) = ssrc {
                if t.ssrcs.contains_key(&ssrc) {
                    return Err(ApiError::InvalidParams(format!("ssrc {ssrc} already produced on this transport")));
                }
                t.ssrcs.insert(ssrc, (id, rtx));
            }
        }
        merge_ext(&mut t.in_ext, &params.extensions);
        t.producers.push(id);
        let producer = Producer {
            id,
            transport,
            ssrc: params.ssrc,
            rtx_ssrc: params.rtx_ssrc,
            consumers: Vec::new(),
            cache: RetransmissionCache::with_config(RtxCacheConfig {
                capacity: self.cfg.rtx_cache_packets,
                ..RtxCacheConfig::default()
            }),
            nack: NackGenerator::new(),
            recv: ReceiveStats::new(),
            stats: StreamStats::default(),
            last_pli: None,
            got_first_packet: false,
            last_sr: None,
            params,
        };
        debug!(%transport, producer = %id, kind = ?producer.params.kind, "producer created");
        self.producers.insert(id, producer);
        Ok(id)
    }

    /// Sends a producer's media on another transport.
    pub fn consume(&mut self, transport: TransportId, params: ConsumeParams) -> Result<ConsumerInfo, ApiError> {
        if !self.transports.contains_key(&transport) {
            return Err(ApiError::UnknownTransport(transport));
        }
        if !self.producers.contains_key(&params.producer) {
            return Err(ApiError::UnknownProducer(params.producer));
        }
        let id = ConsumerId(self.next_id());
        let producer = self.producers.get(&params.producer).ok_or(ApiError::UnknownProducer(params.producer))?;
        let ssrc = random_u32();
        let rtx_ssrc = params.rtx_payload_type.map(|_| random_u32());
        let consumer = Consumer {
            id,
            transport,
            producer: producer.id,
            kind: producer.params.kind,
            codec: producer.params.codec,
            clock_rate: producer.params.clock_rate,
            ssrc,
            payload_type: params.payload_type.unwrap_or(producer.params.payload_type),
            rtx_ssrc,
            rtx_payload_type: params.rtx_payload_type,
            mid: params.mid.clone(),
            paused: params.paused,
            sync: None,
            last_out: None,
            rtx_seq: random_u32() as u16,
            resend: ResendThrottle::new(512),
            packets: 0,
            bytes: 0,
            stats: StreamStats::default(),
        };
        let info = ConsumerInfo {
            id,
            producer: producer.id,
            kind: consumer.kind,
            codec: consumer.codec,
            clock_rate: consumer.clock_rate,
            ssrc,
            payload_type: consumer.payload_type,
            rtx_ssrc,
            rtx_payload_type: consumer.rtx_payload_type,
        };
        let producer_id = producer.id;
        // Checked above.
        if let Some(t) = self.transports.get_mut(&transport) {
            merge_ext(&mut t.out_ext, &params.extensions);
            t.consumers.push(id);
        }
        if let Some(p) = self.producers.get_mut(&producer_id) {
            p.consumers.push(id);
        }
        self.consumers.insert(id, consumer);
        debug!(%transport, consumer = %id, producer = %producer_id, "consumer created");
        Ok(info)
    }

    pub fn pause_producer(&mut self, id: ProducerId, paused: bool) -> Result<(), ApiError> {
        let p = self.producers.get_mut(&id).ok_or(ApiError::UnknownProducer(id))?;
        p.params.paused = paused;
        Ok(())
    }

    pub fn pause_consumer(&mut self, id: ConsumerId, paused: bool) -> Result<(), ApiError> {
        let c = self.consumers.get_mut(&id).ok_or(ApiError::UnknownConsumer(id))?;
        if c.paused && !paused {
            // Resume on a fresh keyframe with numbering that continues where it stopped.
            c.sync = None;
        }
        c.paused = paused;
        Ok(())
    }

    pub fn close_consumer(&mut self, id: ConsumerId) -> Result<(), ApiError> {
        let c = self.consumers.remove(&id).ok_or(ApiError::UnknownConsumer(id))?;
        if let Some(p) = self.producers.get_mut(&c.producer) {
            p.consumers.retain(|&x| x != id);
        }
        if let Some(t) = self.transports.get_mut(&c.transport) {
            t.consumers.retain(|&x| x != id);
        }
        Ok(())
    }

    pub fn close_producer(&mut self, id: ProducerId) -> Result<(), ApiError> {
        let p = self.producers.remove(&id).ok_or(ApiError::UnknownProducer(id))?;
        if let Some(t) = self.transports.get_mut(&p.transport) {
            t.producers.retain(|&x| x != id);
            t.ssrcs.retain(|_, (pid, _)| *pid != id);
        }
        for c in p.consumers {
            if let Some(consumer) = self.consumers.remove(&c) {
                if let Some(t) = self.transports.get_mut(&consumer.transport) {
                    t.consumers.retain(|&x| x != c);
                }
                self.events.push_back(Event::ConsumerClosed { consumer: c, reason: CloseReason::ProducerClosed });
            }
        }
        Ok(())
    }

    pub fn close_transport(&mut self, id: TransportId) -> Result<(), ApiError> {
        self.close_transport_with(id, CloseReason::Requested)
    }

    fn close_transport_with(&mut self, id: TransportId, reason: CloseReason) -> Result<(), ApiError> {
        let t = self.transports.remove(&id).ok_or(ApiError::UnknownTransport(id))?;
        self.by_ufrag.retain(|_, v| *v != id);
        self.by_addr.retain(|_, v| *v != id);
        for p in t.producers {
            if self.close_producer(p).is_ok() {
                self.events.push_back(Event::ProducerClosed { producer: p, reason: CloseReason::TransportClosed });
            }
        }
        for c in t.consumers {
            if self.close_consumer(c).is_ok() {
                self.events.push_back(Event::ConsumerClosed { consumer: c, reason: CloseReason::TransportClosed });
            }
        }
        debug!(transport = %id, ?reason, "transport closed");
        self.events.push_back(Event::TransportClosed { transport: id, reason });
        Ok(())
    }

    /// Opens a data channel (ordered, reliable) with this label on a transport, as soon as its
    /// SCTP association is up. Idempotent per label: a channel with this label, opened by
    /// either side, satisfies it. [`Event::DataChannelOpened`] says when it is usable.
    pub fn open_data_channel(&mut self, now: Instant, transport: TransportId, label: &str) -> Result<(), ApiError> {
        let t = self.transports.get_mut(&transport).ok_or(ApiError::UnknownTransport(transport))?;
        t.sctp.open_channel(label).map_err(|e| sctp_api_error(e, label))?;
        self.mark_sctp_dirty(now, transport);
        Ok(())
    }

    /// Sends one text message on the data channel with this label.
    pub fn send_data(&mut self, now: Instant, transport: TransportId, label: &str, text: &str) -> Result<(), ApiError> {
        let t = self.transports.get_mut(&transport).ok_or(ApiError::UnknownTransport(transport))?;
        t.sctp.send_text(label, text).map_err(|e| sctp_api_error(e, label))?;
        self.counters.data_channel_messages_out += 1;
        self.mark_sctp_dirty(now, transport);
        Ok(())
    }

    /// Whether the data channel with this label can carry messages now.
    pub fn data_channel_open(&self, transport: TransportId, label: &str) -> bool {
        self.transports.get(&transport).is_some_and(|t| t.sctp.is_open(label))
    }

    fn mark_sctp_dirty(&mut self, now: Instant, id: TransportId) {
        if !self.sctp_dirty.contains(&id) {
            self.sctp_dirty.push(id);
        }
        self.sctp_wake = Some(self.sctp_wake.map_or(now, |w| w.min(now)));
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Stats of a producer, or `None` if unknown.
    pub fn producer_stats(&self, id: ProducerId) -> Option<StreamStats> {
        self.producers.get(&id).map(|p| p.stats.clone())
    }

    /// Stats of a consumer, or `None` if unknown.
    pub fn consumer_stats(&self, id: ConsumerId) -> Option<StreamStats> {
        self.consumers.get(&id).map(|c| c.stats.clone())
    }

    pub fn transport_count(&self) -> usize {
        self.transports.len()
    }

    // ---------------------------------------------------------------- input

    /// Handles one received datagram. `buf` is decrypted in place.
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, buf: &mut [u8], out: &mut dyn Transmit) {
        self.counters.datagrams_in += 1;
        match buf.first() {
            // RFC 7983 demultiplexing by the first byte.
            Some(0..=3) => self.handle_stun(now, src, buf, out),
            Some(20..=63) => self.handle_dtls(now, src, buf, out),
            Some(128..=191) => self.handle_srtp(now, src, buf, out),
            _ => self.counters.unknown_kind += 1,
        }
    }

    fn handle_stun(&mut self, now: Instant, src: SocketAddr, buf: &[u8], out: &mut dyn Transmit) {
        let msg = match stun::parse(buf) {
            Ok(m) => m,
            Err(e) => {
                trace!(%src, error = %e, "malformed STUN");
                self.counters.stun_malformed += 1;
                return;
            }
        };
        let Some(local_ufrag) =
            msg.username().and_then(|u| u.split(|&b| b == b':').next()).and_then(|u| std::str::from_utf8(u).ok())
        else {
            self.counters.stun_unknown_ufrag += 1;
            return;
        };
        let Some(&id) = self.by_ufrag.get(local_ufrag) else {
            self.counters.stun_unknown_ufrag += 1;
            return;
        };
        // by_ufrag and transports are kept in step.
        let Some(t) = self.transports.get_mut(&id) else { return };
        let slot = out.buffer();
        let result = t.ice.handle_stun(now, src, &msg, slot);
        match result {
            Ok(reply) => {
                if reply.len > 0 {
                    out.commit(src, reply.len);
                    self.counters.datagrams_out += 1;
                }
                if !t.remote_addrs.contains(&src) {
                    t.remote_addrs.push(src);
                    self.by_addr.insert(src, id);
                }
            }
            Err(e) => {
                trace!(%src, error = %e, "STUN check rejected");
                self.counters.stun_rejected += 1;
                let len = e.reply_len();
                if len > 0 {
                    out.commit(src, len);
                    self.counters.datagrams_out += 1;
                }
            }
        }
        self.drain_ice_events(id);
    }

    fn drain_ice_events(&mut self, id: TransportId) {
        let Some(t) = self.transports.get_mut(&id) else { return };
        let mut expired = false;
        while let Some(ev) = t.ice.poll_event() {
            match ev {
                IceEvent::Connected(addr) | IceEvent::NominatedChanged(addr) => {
                    debug!(transport = %id, %addr, "ICE nominated");
                }
                IceEvent::ConsentExpired => expired = true,
            }
        }
        if expired {
            let _ = self.close_transport_with(id, CloseReason::ConsentExpired);
        }
    }

    fn handle_dtls(&mut self, now: Instant, src: SocketAddr, buf: &[u8], out: &mut dyn Transmit) {
        let Some(&id) = self.by_addr.get(&src) else {
            self.counters.dtls_unknown_address += 1;
            return;
        };
        let Some(t) = self.transports.get_mut(&id) else { return };
        let dst = t.remote().unwrap_or(src);
        let mut sent = 0u64;
        let mut too_large = 0u64;
        let result = t.dtls.handle_packet(now, buf, &mut self.dtls_scratch, &mut |p: &[u8]| {
            let slot = out.buffer();
            if p.len() <= slot.len() {
                slot[..p.len()].copy_from_slice(p);
                out.commit(dst, p.len());
                sent += 1;
            } else {
                too_large += 1;
            }
        });
        self.counters.datagrams_out += sent;
        self.counters.transmit_too_large += too_large;
        if let Some(o) = result {
            self.on_dtls_output(id, o);
        }
        self.sctp_input(now, id, out);
    }

    /// Hands the DTLS application data of a transport to its SCTP association, then sends
    /// what that produced.
    fn sctp_input(&mut self, now: Instant, id: TransportId, out: &mut dyn Transmit) {
        let Some(t) = self.transports.get_mut(&id) else { return };
        let mut any = false;
        while let Some(data) = t.dtls.poll_application_data() {
            any = true;
            if t.connected {
                t.sctp.handle_packet(now, &data);
            } else if t.sctp_early.len() < MAX_EARLY_PACKETS {
                // The peer's certificate is not verified yet (signaling has not delivered the
                // fingerprint): keep the INIT for when it is, rather than wait for a resend.
                t.sctp_early.push(data);
            } else {
                self.counters.sctp_dropped += 1;
            }
        }
        if any {
            self.drive_sctp(now, id, out);
        }
    }

    /// Feeds early packets, runs SCTP timers, sends SCTP output as DTLS records and turns
    /// SCTP events into engine events and counters.
    fn drive_sctp(&mut self, now: Instant, id: TransportId, out: &mut dyn Transmit) {
        let Engine { transports, dtls_scratch, counters, events, .. } = self;
        let Some(t) = transports.get_mut(&id) else { return };
        if !t.connected {
            return;
        }
        for data in std::mem::take(&mut t.sctp_early) {
            t.sctp.handle_packet(now, &data);
        }
        t.sctp.handle_timeout(now);
        if let Some(dst) = t.remote().or(t.remote_addrs.first().copied()) {
            let Transport { sctp, dtls, .. } = t;
            let (mut sent, mut too_large, mut failed) = (0u64, 0u64, 0u64);
            sctp.poll_transmit(now, &mut |packet: &[u8]| {
                let r = dtls.send_application_data(packet, dtls_scratch, &mut |record: &[u8]| {
                    let slot = out.buffer();
                    if record.len() <= slot.len() {
                        slot[..record.len()].copy_from_slice(record);
                        out.commit(dst, record.len());
                        sent += 1;
                    } else {
                        too_large += 1;
                    }
                });
                if r.is_err() {
                    failed += 1;
                }
            });
            counters.datagrams_out += sent;
            counters.transmit_too_large += too_large;
            counters.sctp_send_failed += failed;
        }
        while let Some(ev) = t.sctp.poll_event() {
            match ev {
                SctpEvent::ChannelOpened { label } => {
                    debug!(transport = %id, label, "data channel opened");
                    events.push_back(Event::DataChannelOpened { transport: id, label });
                }
                SctpEvent::Text { label, text } => {
                    counters.data_channel_messages_in += 1;
                    events.push_back(Event::DataChannelMessage { transport: id, label, text });
                }
                SctpEvent::Dropped(SctpDrop::Packet) => counters.sctp_dropped += 1,
                SctpEvent::Dropped(SctpDrop::Dcep) => counters.dcep_malformed += 1,
                SctpEvent::Dropped(SctpDrop::Binary) => counters.data_channel_binary_dropped += 1,
                SctpEvent::Dropped(SctpDrop::Message | SctpDrop::TooManyChannels) => counters.data_channel_dropped += 1,
            }
        }
    }

    fn on_dtls_output(&mut self, id: TransportId, output: DtlsOutput) {
        match output {
            DtlsOutput::Ready { profile, outbound, inbound } => {
                let Some(t) = self.transports.get_mut(&id) else { return };
                t.srtp_out = Some(*outbound);
                t.srtp_in = Some(*inbound);
                t.connected = true;
                if !t.sctp_early.is_empty() && !self.sctp_dirty.contains(&id) {
                    // Flushed by the next handle_timeout (or the next datagram).
                    self.sctp_dirty.push(id);
                }
                let remote = t.remote().or(t.remote_addrs.first().copied());
                debug!(transport = %id, ?profile, "DTLS ready, SRTP keys set");
                if let Some(remote) = remote {
                    self.events.push_back(Event::TransportConnected { transport: id, remote });
                }
            }
            DtlsOutput::Failed(failure) => {
                self.counters.dtls_failed += 1;
                let reason = match failure {
                    DtlsFailure::FingerprintMismatch => CloseReason::FingerprintMismatch,
                    DtlsFailure::Protocol(e) => CloseReason::Dtls(e),
                    DtlsFailure::Closed => CloseReason::Dtls("peer closed".into()),
                };
                let _ = self.close_transport_with(id, reason);
            }
        }
    }

    fn handle_srtp(&mut self, now: Instant, src: SocketAddr, buf: &mut [u8], out: &mut dyn Transmit) {
        let Some(&id) = self.by_addr.get(&src) else {
            self.counters.srtp_unknown_address += 1;
            return;
        };
        let is_rtcp = rtp::is_rtcp(buf);
        let Some(t) = self.transports.get_mut(&id) else { return };
        let Some(srtp) = t.srtp_in.as_mut() else {
            self.counters.srtp_not_ready += 1;
            return;
        };
        let res = if is_rtcp { srtp.unprotect_rtcp(buf) } else { srtp.unprotect_rtp(buf) };
        let len = match res {
            Ok(len) => len,
            Err(e) => {
                use crate::srtp::SrtpError;
                match e {
                    SrtpError::Auth => self.counters.srtp_auth_failed += 1,
                    SrtpError::Replay => self.counters.srtp_replayed += 1,
                    _ => self.counters.srtp_other += 1,
                }
                trace!(transport = %id, error = %e, "SRTP unprotect failed");
                return;
            }
        };
        if is_rtcp {
            self.handle_rtcp(now, id, &buf[..len], out);
        } else {
            self.handle_rtp(now, id, &mut buf[..len], out);
        }
    }

    fn handle_rtp(&mut self, now: Instant, tid: TransportId, buf: &mut [u8], out: &mut dyn Transmit) {
        let Ok(mut header) = rtp::parse(buf) else {
            self.counters.rtp_malformed += 1;
            return;
        };
        let Some(t) = self.transports.get_mut(&tid) else { return };
        if let Some(twcc_id) = t.in_ext.transport_cc
            && let Some(seq) = header.find_extension(buf, twcc_id).and_then(rtp::read_transport_cc)
        {
            t.twcc_in.record(seq, now);
        }
        let (pid, is_rtx) = match t.ssrcs.get(&header.ssrc) {
            Some(&v) => v,
            None => match bind_ssrc_by_mid(t, &self.producers, buf, &header) {
                Some(v) => v,
                None => {
                    self.counters.rtp_unknown_ssrc += 1;
                    return;
                }
            },
        };
        let Some(p) = self.producers.get_mut(&pid) else { return };
        if is_rtx {
            if p.rtx_ssrc.is_none() {
                p.rtx_ssrc = Some(header.ssrc);
            }
            // RTX padding-only probes carry no original packet.
            let payload = &buf[header.header_len..header.header_len + header.payload_len];
            let Some(osn) = rtp::rtx_original_sequence(payload) else { return };
            let Some(media_ssrc) = p.ssrc else { return };
            // Turn the RTX packet back into the original in place: drop the OSN, restore
            // sequence number, SSRC and payload type.
            let start = header.header_len;
            let end = start + header.payload_len;
            buf.copy_within(start + 2..end, start);
            let new_len = end - 2;
            // The buffer holds a parsed header, so these in-place writes cannot fail.
            let _ = rtp::set_sequence_number(buf, osn);
            let _ = rtp::set_ssrc(buf, media_ssrc);
            let _ = rtp::set_payload_type(buf, p.params.payload_type);
            // Padding bit: the payload length changed, padding (if any) is gone with it.
            buf[0] &= !0x20;
            let Ok(h) = rtp::parse(&buf[..new_len]) else { return };
            header = h;
            self.forward_media(now, pid, &mut buf[..new_len], header, out);
        } else {
            if p.ssrc.is_none() {
                p.ssrc = Some(header.ssrc);
            }
            if header.payload_type != p.params.payload_type {
                // Another codec's packets on a mid we only know one payload type of.
                self.counters.rtp_unknown_ssrc += 1;
                return;
            }
            self.forward_media(now, pid, buf, header, out);
        }
    }

    fn forward_media(
        &mut self,
        now: Instant,
        pid: ProducerId,
        buf: &mut [u8],
        header: rtp::RtpHeader,
        out: &mut dyn Transmit,
    ) {
        let Some(p) = self.producers.get_mut(&pid) else { return };
        let payload_end = header.header_len + header.payload_len;
        let payload = &buf[header.header_len..payload_end];
        let keyframe = p.params.kind == MediaKind::Video && codec::is_keyframe(p.params.codec, payload);
        if !p.got_first_packet {
            p.got_first_packet = true;
            self.events.push_back(Event::ProducerFirstPacket { producer: pid, ssrc: header.ssrc });
        }
        if keyframe && header_starts_frame(p.params.codec, payload) {
            p.stats.keyframes += 1;
            self.events.push_back(Event::KeyframeSeen { producer: pid });
        }
        p.stats.packets += 1;
        p.stats.bytes += buf.len() as u64;
        p.recv.update(header.sequence_number, header.timestamp, now, p.params.clock_rate);
        p.nack.on_packet(header.sequence_number, now, keyframe);
        // A packet the cache refuses (too large, or far out of order) just cannot be resent.
        let _ = p.cache.insert(header.sequence_number, now, &buf[..payload_end]);
        if p.params.paused {
            return;
        }
        let producer_transport = p.transport;
        let in_audio_level = self.transports.get(&producer_transport).and_then(|t| t.in_ext.audio_level);
        // Split borrows: the producer's consumer list is read while consumers and their
        // transports are mutated.
        let Engine { producers, consumers, transports, counters, .. } = self;
        let Some(p) = producers.get(&pid) else { return };
        for cid in &p.consumers {
            let Some(c) = consumers.get_mut(cid) else { continue };
            if c.paused {
                continue;
            }
            let sync = match c.sync {
                Some(s) => s,
                None => {
                    if c.kind == MediaKind::Video && !keyframe {
                        continue;
                    }
                    let s = start_sync(c, header.sequence_number, header.timestamp, now);
                    c.sync = Some(s);
                    s
                }
            };
            // Older than where this consumer started: the subscriber never had it.
            let since_start = header.sequence_number.wrapping_sub(sync.start_seq) as i16;
            if since_start < 0 {
                continue;
            }
            // Keep the start mark within half the sequence space behind the stream, or after
            // 32768 packets every new packet would look older than the start.
            if since_start > START_MARK_LAG
                && let Some(s) = c.sync.as_mut()
            {
                s.start_seq = header.sequence_number.wrapping_sub(START_MARK_LAG as u16);
            }
            let Some(t) = transports.get_mut(&c.transport) else { continue };
            let out_seq = header.sequence_number.wrapping_add(sync.seq_offset);
            let out_ts = header.timestamp.wrapping_add(sync.ts_offset);
            if let Some(len) = write_forward(now, t, c, buf, &header, out_seq, out_ts, None, in_audio_level, out) {
                c.last_out = Some((out_seq, out_ts, now));
                c.packets += 1;
                c.bytes += len as u64;
                c.stats.packets += 1;
                c.stats.bytes += len as u64;
                counters.forwarded += 1;
                counters.datagrams_out += 1;
            }
        }
    }

    fn handle_rtcp(&mut self, now: Instant, tid: TransportId, buf: &[u8], out: &mut dyn Transmit) {
        // Feedback is resolved to consumers while parsing and acted on after, so the engine's
        // reusable scratch lists carry it across (no allocation per RTCP packet).
        let mut keyframes = std::mem::take(&mut self.rtcp_keyframes);
        let mut resends = std::mem::take(&mut self.rtcp_resends);
        keyframes.clear();
        resends.clear();
        {
            let Engine { transports, consumers, producers, counters, .. } = &mut *self;
            let Some(t) = transports.get(&tid) else { return };
            let consumer_by_ssrc =
                |ssrc: u32| t.consumers.iter().filter_map(|c| consumers.get(c)).find(|c| c.ssrc == ssrc);
            for packet in rtcp::packets(buf) {
                let Ok(packet) = packet else {
                    counters.rtcp_malformed += 1;
                    break;
                };
                match packet {
                    rtcp::RtcpPacket::SenderReport { ssrc, ntp_time, rtp_time, .. } => {
                        if let Some(&(pid, false)) = t.ssrcs.get(&ssrc)
                            && let Some(p) = producers.get_mut(&pid)
                        {
                            p.recv.on_sender_report(ntp_time, now);
                            p.last_sr = Some((ntp_time, rtp_time, now));
                        }
                    }
                    rtcp::RtcpPacket::Pli { media_ssrc, .. } => {
                        counters.plis_received += 1;
                        keyframes.extend(consumer_by_ssrc(media_ssrc).map(|c| c.producer));
                    }
                    rtcp::RtcpPacket::Fir { entries, .. } => {
                        for (ssrc, _) in entries.take(16) {
                            counters.plis_received += 1;
                            keyframes.extend(consumer_by_ssrc(ssrc).map(|c| c.producer));
                        }
                    }
                    rtcp::RtcpPacket::Nack { media_ssrc, lost, .. } => {
                        let Some(c) = consumer_by_ssrc(media_ssrc) else { continue };
                        // Bounded: one compound cannot make us resend more than this.
                        for seq in lost.take(512) {
                            counters.nacks_received += 1;
                            resends.push((c.id, seq));
                        }
                    }
                    _ => {}
                }
            }
        }
        for &pid in &keyframes {
            self.request_keyframe(now, pid, out);
        }
        for &(cid, seq) in &resends {
            self.retransmit(now, cid, seq, out);
        }
        self.rtcp_keyframes = keyframes;
        self.rtcp_resends = resends;
    }

    /// Answers a subscriber's NACK for `out_seq` from the producer's cache.
    fn retransmit(&mut self, now: Instant, cid: ConsumerId, out_seq: u16, out: &mut dyn Transmit) {
        let rtt = self.cfg.default_rtt;
        let Engine { producers, consumers, transports, counters, .. } = self;
        let Some(c) = consumers.get_mut(&cid) else { return };
        let Some(sync) = c.sync else { return };
        let Some(p) = producers.get_mut(&c.producer) else { return };
        let in_audio_level = transports.get(&p.transport).and_then(|t| t.in_ext.audio_level);
        let in_seq = out_seq.wrapping_sub(sync.seq_offset);
        if !c.resend.allow(out_seq, now, rtt) {
            return;
        }
        let Some(original) = p.cache.get(in_seq, now) else { return };
        let Ok(header) = rtp::parse(original) else { return };
        let Some(t) = transports.get_mut(&c.transport) else { return };
        let out_ts = header.timestamp.wrapping_add(sync.ts_offset);
        let rtx = c.rtx_payload_type.zip(c.rtx_ssrc).map(|(pt, ssrc)| {
            let seq = c.rtx_seq;
            c.rtx_seq = c.rtx_seq.wrapping_add(1);
            (pt, ssrc, seq)
        });
        if write_forward(now, t, c, original, &header, out_seq, out_ts, rtx, in_audio_level, out).is_some() {
            c.stats.retransmitted += 1;
            c.stats.nacks += 1;
            counters.retransmitted += 1;
            counters.datagrams_out += 1;
        }
    }

    /// Asks a producer for a keyframe, at most once per throttle window.
    fn request_keyframe(&mut self, now: Instant, pid: ProducerId, out: &mut dyn Transmit) {
        let Some(p) = self.producers.get_mut(&pid) else { return };
        if p.last_pli.is_some_and(|t| now.saturating_duration_since(t) < self.cfg.pli_throttle) {
            self.counters.plis_throttled += 1;
            return;
        }
        let Some(media_ssrc) = p.ssrc else { return };
        let Some(t) = self.transports.get_mut(&p.transport) else { return };
        let n = rtcp::write_pli(&mut self.rtcp_scratch, t.rtcp_ssrc, media_ssrc);
        if let Ok(n) = n
            && send_rtcp(t, &self.rtcp_scratch[..n], out)
        {
            p.last_pli = Some(now);
            p.stats.plis += 1;
            self.counters.plis_sent += 1;
            self.counters.datagrams_out += 1;
        }
    }

    // ---------------------------------------------------------------- time

    /// When the engine next needs [`Engine::handle_timeout`].
    pub fn poll_timeout(&self) -> Instant {
        match self.sctp_wake {
            Some(w) => w.min(self.next_tick),
            None => self.next_tick,
        }
    }

    /// Runs timers: ICE consent, DTLS retransmission, NACKs, TWCC feedback, RTCP reports.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut dyn Transmit) {
        if !self.sctp_dirty.is_empty() {
            for id in std::mem::take(&mut self.sctp_dirty) {
                self.drive_sctp(now, id, out);
            }
        }
        self.sctp_wake = None;
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        let ids: Vec<TransportId> = self.transports.keys().copied().collect();
        for id in ids {
            self.transport_timers(now, id, out);
        }
        // Keyframe requests for consumers still waiting to start, and NACKs toward producers.
        let pids: Vec<ProducerId> = self.producers.keys().copied().collect();
        for pid in pids {
            self.producer_timers(now, pid, out);
        }
        if !self.cfg.stats_interval.is_zero() && now >= self.next_stats {
            self.next_stats = now + self.cfg.stats_interval;
            for p in self.producers.values() {
                let mut stats = p.stats.clone();
                stats.packets_lost = p.recv.cumulative_lost() as i64;
                self.events.push_back(Event::Stats { producer: Some(p.id), consumer: None, stats });
            }
            for c in self.consumers.values() {
                self.events.push_back(Event::Stats { producer: None, consumer: Some(c.id), stats: c.stats.clone() });
            }
        }
    }

    fn transport_timers(&mut self, now: Instant, id: TransportId, out: &mut dyn Transmit) {
        let Some(t) = self.transports.get_mut(&id) else { return };
        t.ice.handle_timeout(now);
        let dst = t.remote().or(t.remote_addrs.first().copied());
        if let Some(dst) = dst {
            let mut sent = 0;
            let result = t.dtls.handle_timeout(now, &mut self.dtls_scratch, &mut |p: &[u8]| {
                let slot = out.buffer();
                if p.len() <= slot.len() {
                    slot[..p.len()].copy_from_slice(p);
                    out.commit(dst, p.len());
                    sent += 1;
                }
            });
            self.counters.datagrams_out += sent;
            if let Some(o) = result {
                self.on_dtls_output(id, o);
            }
        }
        self.drain_ice_events(id);
        let Some(t) = self.transports.get_mut(&id) else { return };
        if !t.connected {
            return;
        }
        if t.sctp.poll_timeout().is_some_and(|due| due <= now) {
            self.drive_sctp(now, id, out);
        }
        let Some(t) = self.transports.get_mut(&id) else { return };
        // Transport-wide congestion control feedback, so the publisher's browser ramps up.
        let media_ssrc = t.producers.first().and_then(|p| self.producers.get(p)).and_then(|p| p.ssrc).unwrap_or(0);
        while let Some(n) = t.twcc_in.poll_feedback(now, t.rtcp_ssrc, media_ssrc, &mut self.rtcp_scratch) {
            if send_rtcp(t, &self.rtcp_scratch[..n], out) {
                self.counters.datagrams_out += 1;
            } else {
                break;
            }
        }
        if now >= t.next_rtcp {
            t.next_rtcp = now + self.cfg.rtcp_interval;
            let n = write_reports(now, t, &mut self.producers, &self.consumers, &mut self.rtcp_scratch);
            if n > 0 && send_rtcp(t, &self.rtcp_scratch[..n], out) {
                self.counters.datagrams_out += 1;
            }
        }
    }

    fn producer_timers(&mut self, now: Instant, pid: ProducerId, out: &mut dyn Transmit) {
        let rtt = self.cfg.default_rtt;
        let Some(p) = self.producers.get_mut(&pid) else { return };
        let Some(media_ssrc) = p.ssrc else { return };
        self.nack_scratch.clear();
        if let Some(seqs) = p.nack.poll_nacks(now, rtt) {
            self.nack_scratch.extend_from_slice(seqs);
        }
        let wants_keyframe = p.nack.needs_keyframe()
            || p.consumers.iter().any(|c| {
                self.consumers.get(c).is_some_and(|c| c.sync.is_none() && !c.paused && c.kind == MediaKind::Video)
            });
        if !self.nack_scratch.is_empty()
            && let Some(t) = self.transports.get_mut(&p.transport)
            && let Ok(n) = rtcp::write_nack(&mut self.rtcp_scratch, t.rtcp_ssrc, media_ssrc, &self.nack_scratch)
            && send_rtcp(t, &self.rtcp_scratch[..n], out)
        {
            p.stats.nacks += self.nack_scratch.len() as u64;
            self.counters.nacks_sent += 1;
            self.counters.datagrams_out += 1;
        }
        if wants_keyframe && p.params.kind == MediaKind::Video && p.got_first_packet {
            self.request_keyframe(now, pid, out);
        }
    }
}

/// The API error for a data channel command that failed.
fn sctp_api_error(e: SctpError, label: &str) -> ApiError {
    match e {
        SctpError::NotOpen(_) => ApiError::DataChannelNotOpen(label.to_owned()),
        SctpError::TooLarge { len, max } => ApiError::MessageTooLarge { len: len as u64, max: max as u64 },
        other => ApiError::InvalidParams(other.to_string()),
    }
}

/// Whether a keyframe packet is the first packet of its frame (for counting frames, not packets).
fn header_starts_frame(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => payload.first().is_some_and(|b| b & 0x10 != 0),
        _ => true,
    }
}

fn merge_ext(into: &mut ExtensionIds, from: &ExtensionIds) {
    macro_rules! take {
        ($($f:ident),*) => { $( if from.$f.is_some() { into.$f = from.$f; } )* };
    }
    take!(mid, rid, repaired_rid, abs_send_time, transport_cc, audio_level, video_orientation);
}

/// Binds an unknown SSRC to the producer whose mid (and rid) its header extensions name.
fn bind_ssrc_by_mid(
    t: &mut Transport,
    producers: &FastMap<ProducerId, Producer>,
    buf: &[u8],
    header: &rtp::RtpHeader,
) -> Option<(ProducerId, bool)> {
    let mid = header.find_extension(buf, t.in_ext.mid?)?;
    let rid = t.in_ext.rid.and_then(|id| header.find_extension(buf, id));
    let rrid = t.in_ext.repaired_rid.and_then(|id| header.find_extension(buf, id));
    let (rid, is_rtx) = match (rid, rrid) {
        (Some(r), _) => (Some(r), false),
        (None, Some(r)) => (Some(r), true),
        (None, None) => (
            None,
            header.payload_type != 0
                && t.producers
                    .iter()
                    .any(|p| producers.get(p).is_some_and(|p| p.params.rtx_payload_type == Some(header.payload_type))),
        ),
    };
    // A bounded table: a transport carries a handful of streams, not thousands.
    if t.ssrcs.len() >= 64 {
        return None;
    }
    let pid = t.producers.iter().copied().find(|pid| {
        producers.get(pid).is_some_and(|p| {
            p.params.mid.as_deref().map(str::as_bytes) == Some(mid)
                && match (&p.params.rid, rid) {
                    (Some(want), Some(got)) => want.as_bytes() == got,
                    (None, _) => true,
                    (Some(_), None) => false,
                }
        })
    })?;
    t.ssrcs.insert(header.ssrc, (pid, is_rtx));
    Some((pid, is_rtx))
}

fn start_sync(c: &Consumer, in_seq: u16, in_ts: u32, now: Instant) -> SeqSync {
    match c.last_out {
        // Continue after a pause: next sequence number, and a timestamp advanced by the
        // wall-clock time that passed, so the receiver's jitter buffer sees real time.
        Some((last_seq, last_ts, at)) => {
            let elapsed = now.saturating_duration_since(at);
            let ticks = (elapsed.as_secs_f64() * c.clock_rate as f64) as u32;
            let next_ts = last_ts.wrapping_add(ticks.max(1));
            SeqSync {
                start_seq: in_seq,
                seq_offset: last_seq.wrapping_add(1).wrapping_sub(in_seq),
                ts_offset: next_ts.wrapping_sub(in_ts),
            }
        }
        None => {
            let first_seq = random_u32() as u16 & 0x7fff;
            let first_ts = random_u32();
            SeqSync {
                start_seq: in_seq,
                seq_offset: first_seq.wrapping_sub(in_seq),
                ts_offset: first_ts.wrapping_sub(in_ts),
            }
        }
    }
}

/// Writes one outgoing RTP packet for a consumer straight into the send buffer and encrypts it
/// there. `rtx` = (payload type, ssrc, seq) sends it as an RTX packet instead.
#[allow(clippy::too_many_arguments)]
fn write_forward(
    now: Instant,
    t: &mut Transport,
    c: &Consumer,
    original: &[u8],
    header: &rtp::RtpHeader,
    out_seq: u16,
    out_ts: u32,
    rtx: Option<(u8, u32, u16)>,
    in_audio_level: Option<u8>,
    out: &mut dyn Transmit,
) -> Option<usize> {
    let dst = t.remote()?;
    let srtp = t.srtp_out.as_mut()?;
    let mut ext_buf = [0u8; 64];
    let mut exts: [(u8, std::ops::Range<usize>); 5] = Default::default();
    let mut n_ext = 0;
    let mut used = 0;
    let mut push = |id: Option<u8>, bytes: &[u8], exts: &mut [(u8, std::ops::Range<usize>); 5]| {
        if let Some(id) = id
            && used + bytes.len() <= ext_buf.len()
            && n_ext < exts.len()
        {
            ext_buf[used..used + bytes.len()].copy_from_slice(bytes);
            exts[n_ext] = (id, used..used + bytes.len());
            n_ext += 1;
            used += bytes.len();
        }
    };
    if let (Some(id), Some(mid)) = (t.out_ext.mid, c.mid.as_deref()) {
        push(Some(id), mid.as_bytes(), &mut exts);
    }
    if t.out_ext.transport_cc.is_some() {
        let seq = t.twcc_out_seq;
        t.twcc_out_seq = t.twcc_out_seq.wrapping_add(1);
        push(t.out_ext.transport_cc, &seq.to_be_bytes(), &mut exts);
    }
    if t.out_ext.abs_send_time.is_some() {
        push(t.out_ext.abs_send_time, &abs_send_time(now), &mut exts);
    }
    // Audio level is the publisher's measurement: copy it through.
    if let (Some(out_id), Some(in_id)) = (t.out_ext.audio_level, in_audio_level)
        && let Some(v) = header.find_extension(original, in_id)
    {
        let mut tmp = [0u8; 1];
        let n = v.len().min(1);
        tmp[..n].copy_from_slice(&v[..n]);
        push(Some(out_id), &tmp[..n], &mut exts);
    }
    let list: [(u8, &[u8]); 5] = std::array::from_fn(|i| (exts[i].0, &ext_buf[exts[i].1.clone()]));
    let (pt, ssrc, seq) = match rtx {
        Some((pt, ssrc, seq)) => (pt, ssrc, seq),
        None => (c.payload_type, c.ssrc, out_seq),
    };
    let fields = rtp::HeaderFields {
        marker: header.marker,
        payload_type: pt,
        sequence_number: seq,
        timestamp: out_ts,
        ssrc,
        csrcs: &[],
    };
    let slot = out.buffer();
    let hlen = rtp::write_header(slot, &fields, &list[..n_ext]).ok()?;
    let payload = &original[header.header_len..header.header_len + header.payload_len];
    let mut plen = payload.len();
    let overhead = srtp.profile().rtp_overhead();
    if rtx.is_some() {
        if hlen + 2 + plen + overhead > slot.len() {
            return None;
        }
        slot[hlen..hlen + 2].copy_from_slice(&out_seq.to_be_bytes());
        slot[hlen + 2..hlen + 2 + plen].copy_from_slice(payload);
        plen += 2;
    } else {
        if hlen + plen + overhead > slot.len() {
            return None;
        }
        slot[hlen..hlen + plen].copy_from_slice(payload);
    }
    let len = srtp.protect_rtp(slot, hlen + plen).ok()?;
    out.commit(dst, len);
    Some(len)
}

/// abs-send-time: 6.18 fixed-point seconds, 24 bits.
fn abs_send_time(now: Instant) -> [u8; 3] {
    // Only differences matter to the receiver, so any fixed origin works.
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(|| now);
    let d = now.saturating_duration_since(origin);
    let v = ((d.as_nanos() << 18) / 1_000_000_000) as u32 & 0x00ff_ffff;
    let b = v.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// Protects an RTCP packet into the send buffer and commits it. Returns false if the
/// transport is not ready.
fn send_rtcp(t: &mut Transport, plain: &[u8], out: &mut dyn Transmit) -> bool {
    let Some(dst) = t.remote() else { return false };
    let Some(srtp) = t.srtp_out.as_mut() else { return false };
    let slot = out.buffer();
    if plain.len() + srtp.profile().rtcp_overhead() > slot.len() {
        return false;
    }
    slot[..plain.len()].copy_from_slice(plain);
    match srtp.protect_rtcp(slot, plain.len()) {
        Ok(len) => {
            out.commit(dst, len);
            true
        }
        Err(_) => false,
    }
}

/// Receiver reports for the producers of a transport, sender reports for its consumers.
///
/// A consumer's sender report maps its RTP clock to the publisher's NTP clock, taken from the
/// publisher's last sender report and carried forward by the time since it arrived: subscribers
/// then line audio up with video exactly as the publisher's clocks say.
fn write_reports(
    now: Instant,
    t: &Transport,
    producers: &mut FastMap<ProducerId, Producer>,
    consumers: &FastMap<ConsumerId, Consumer>,
    buf: &mut [u8],
) -> usize {
    let mut blocks = Vec::new();
    for pid in &t.producers {
        if let Some(p) = producers.get_mut(pid)
            && let (Some(ssrc), Some(b)) = (p.ssrc, p.recv.report_block(now))
        {
            blocks.push(rtcp::ReportBlock { ssrc, ..b });
        }
    }
    let mut len = 0;
    if !blocks.is_empty() {
        // A transport publishes a handful of tracks; more than 31 blocks would need a second RR.
        blocks.truncate(31);
        if let Ok(n) = rtcp::write_receiver_report(&mut buf[len..], t.rtcp_ssrc, &blocks) {
            len += n;
        }
    }
    for cid in &t.consumers {
        if len + 64 > buf.len() {
            break;
        }
        let Some(c) = consumers.get(cid) else { continue };
        let Some(sync) = c.sync else { continue };
        let Some((sr_ntp, sr_rtp, arrived)) = producers.get(&c.producer).and_then(|p| p.last_sr) else { continue };
        let since = now.saturating_duration_since(arrived);
        let ntp = sr_ntp.wrapping_add(crate::stats::duration_to_ntp(since));
        let rtp_ts =
            sr_rtp.wrapping_add(sync.ts_offset).wrapping_add((since.as_secs_f64() * c.clock_rate as f64) as u32);
        let info = rtcp::SenderInfo {
            ssrc: c.ssrc,
            ntp_time: ntp,
            rtp_time: rtp_ts,
            packet_count: c.packets as u32,
            octet_count: c.bytes as u32,
        };
        if let Ok(n) = rtcp::write_sender_report(&mut buf[len..], &info, &[]) {
            len += n;
        }
    }
    len
}
