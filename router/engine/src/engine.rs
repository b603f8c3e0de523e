//! The shard engine: every transport, producer and consumer of one shard, and the packet path
//! between them. See the crate guide for the flow; this file is the wiring.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, trace};

use crate::allocation::{Allocator, LayerDemand};
use crate::api::*;
use crate::bwe::{BandwidthEstimator, BweConfig};
use crate::codec::{self, Codec, Vp8Descriptor};
use crate::dtls::{Certificate, DtlsFailure, DtlsOutput, DtlsState, Fingerprint};
use crate::ice::{IceCredentials, IceEvent, IceLite};
use crate::ids::{ConsumerId, FastMap, ProducerId, TransportId};
use crate::liveness::{self, LayerLiveness, UnservedTime};
use crate::nack::NackGenerator;
use crate::rtx_cache::{ResendThrottle, RetransmissionCache, RtxCacheConfig};
use crate::sctp::{MAX_EARLY_PACKETS, SctpDrop, SctpError, SctpEvent, SctpTransport};
use crate::simulcast::{self, AudioLevelMeter, LayerDecision, LayerState, MAX_LAYERS, RateMeter};
use crate::srtp::SrtpSession;
use crate::stats::ReceiveStats;
use crate::twcc::TwccReceiver;
use crate::uplink::{self, LayerNeed, ProducerUplink, UplinkCap};
use crate::{rtcp, rtp, stun};

mod live_layers;

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
    /// RTP whose rid names no layer of the producer its mid names.
    pub rtp_unknown_rid: u64,
    /// RTP packets (usually RTX) whose sequence number the producer's layer already had:
    /// a publisher's redundant padding or a late retransmission, not forwarded.
    pub rtp_duplicates: u64,
    pub rtcp_malformed: u64,
    /// PLI, FIR, NACK or REMB about an SSRC this transport does not send.
    pub feedback_unknown_ssrc: u64,
    /// Simulcast layer switches of all consumers (each on a keyframe of the new layer).
    pub layer_switches: u64,
    /// Switches given up because the target layer's keyframe never came.
    pub layer_switch_timeouts: u64,
    /// Simulcast layers that started carrying frames, and that stopped (padding, or nothing,
    /// for longer than a few of their frame intervals: `liveness`).
    pub simulcast_layers_started: u64,
    pub simulcast_layers_stopped: u64,
    /// Video consumers that fell back to a layer other than the one they want because it is not
    /// live at the publisher (counted once per fallback, not per packet).
    pub simulcast_fallbacks: u64,
    /// Milliseconds, summed over video consumers, with no media forwarded (padding does not
    /// count) for over [`liveness::UNSERVED_AFTER`] although the subscriber wants video, its bandwidth
    /// allows it and the publisher sends some: the time a subscriber's tile is frozen by the
    /// router. 0 is the target.
    pub video_unserved_ms: u64,
    /// Transport-cc feedback packets received from subscribers, and those that were malformed
    /// or named only packets the estimator never sent (or forgot).
    pub twcc_feedback_received: u64,
    pub twcc_feedback_unknown: u64,
    pub remb_received: u64,
    /// REMBs sent to publishers to stop (or resume) simulcast layers nobody needs (`uplink`).
    pub uplink_remb_sent: u64,
    /// Padding packets sent to probe a subscriber's bandwidth.
    pub probe_packets: u64,
    pub forwarded: u64,
    pub nacks_received: u64,
    pub nacks_sent: u64,
    pub retransmitted: u64,
    /// NACKs not answered because the subscriber's link had no room for the resend.
    pub retransmits_over_budget: u64,
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
    /// Media tap records handed to the recorder's ring, and those dropped because it was full.
    pub tap_records: u64,
    pub tap_dropped: u64,
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
    /// Incoming SSRC → producer, its layer, and `true` for the RTX stream of that layer.
    ssrcs: FastMap<u32, StreamRef>,
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
    /// What this transport may be sent (as a subscriber) and how it is shared out.
    downlink: Downlink,
    /// The send-rate cap on this transport as a publisher (`uplink`).
    uplink_cap: UplinkCap,
    next_uplink_check: Instant,
}

/// A subscriber's side of bandwidth: its estimate and the allocation of its video consumers.
struct Downlink {
    bwe: BandwidthEstimator,
    /// Congestion feedback (transport-cc or REMB) has arrived: until then the estimate is a
    /// guess and the allocation does not hold layers back.
    has_feedback: bool,
    /// The role's cap (`maxSubsBitRate`).
    max_bitrate_bps: Option<u64>,
    allocator: Allocator,
    next_allocation: Instant,
    /// Bytes of retransmission the subscriber's link may take now (a token bucket refilled at
    /// [`RTX_SHARE`] of the estimate): resending into a congested link makes more loss, and
    /// the subscriber NACKs that too.
    rtx_tokens: f64,
    rtx_refilled: Instant,
    /// The round trip the estimator measured, for pacing resends of one packet.
    rtt: Option<Duration>,
}

impl Downlink {
    /// Whether the estimate rests on evidence: an overuse, a decrease for loss, a probe that
    /// got through, or the subscriber's REMB. Until then it is the initial guess, and holding a
    /// subscriber's video back on a guess would be wrong (a clean link shows no congestion at
    /// all); probing makes it measured soon enough whenever more is wanted.
    /// Takes `bytes` of retransmission budget, or says no. Unlimited while the estimate is
    /// not measured.
    fn take_rtx_budget(&mut self, now: Instant, bytes: usize) -> bool {
        if !self.measured() {
            return true;
        }
        let rate = self.bwe.estimate_bps() as f64 / 8.0 * RTX_SHARE;
        let elapsed = now.saturating_duration_since(self.rtx_refilled).as_secs_f64();
        self.rtx_refilled = now;
        // At most 100 ms of it saved up: a burst of NACKs after a loss is answered, a storm is not.
        self.rtx_tokens = (self.rtx_tokens + rate * elapsed).min(rate * 0.1 + 1500.0);
        if self.rtx_tokens < bytes as f64 {
            return false;
        }
        self.rtx_tokens -= bytes as f64;
        true
    }

    fn measured(&self) -> bool {
        if !self.has_feedback {
            return false;
        }
        let s = self.bwe.stats();
        s.overuse_events > 0
            || s.probes_succeeded > 0
            || s.remb_fallback
            || s.estimate_bps < BweConfig::default().initial_bps
    }
}

/// Where an incoming SSRC goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamRef {
    producer: ProducerId,
    layer: u8,
    rtx: bool,
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
    /// One for a plain track; the simulcast layers, lowest first, otherwise.
    layers: Vec<Layer>,
    consumers: Vec<ConsumerId>,
    stats: StreamStats,
    got_first_packet: bool,
    audio_level: AudioLevelMeter,
    /// The layers some consumer may need, as last reported ([`Event::LayersNeeded`]).
    needed: Vec<bool>,
    /// Since when each layer has gone unneeded, to stop it at the publisher (`uplink`).
    need: [LayerNeed; MAX_LAYERS],
    /// Recording: this producer's packets also go to the tap sink.
    tap: Option<crate::tap::Tap>,
}

/// One RTP stream of a producer (its only one, or one simulcast layer): numbering, loss and
/// retransmission are per stream.
struct Layer {
    rid: Option<String>,
    ssrc: Option<u32>,
    rtx_ssrc: Option<u32>,
    cache: RetransmissionCache,
    nack: NackGenerator,
    recv: ReceiveStats,
    rate: RateMeter,
    /// Whether the layer carries frames now (not just padding): simulcast fallback.
    liveness: LayerLiveness,
    /// Width and height from the last keyframe (VP8).
    size: Option<(u16, u16)>,
    last_pli: Option<Instant>,
    /// A keyframe arrived since the last PLI: a consumer that starts waiting for a switch now
    /// missed it and may ask again at once (see [`Engine::request_keyframe`]).
    pli_answered: bool,
    /// The publisher's last sender report: NTP time, RTP time, when it arrived. Consumers'
    /// sender reports are derived from it, so subscribers keep the publisher's A/V sync.
    last_sr: Option<(u64, u32, Instant)>,
}

impl Layer {
    fn new(rid: Option<String>, ssrc: Option<u32>, rtx_ssrc: Option<u32>, cache_packets: usize) -> Layer {
        Layer {
            rid,
            ssrc,
            rtx_ssrc,
            cache: RetransmissionCache::with_config(RtxCacheConfig {
                capacity: cache_packets,
                ..RtxCacheConfig::default()
            }),
            nack: NackGenerator::new(),
            recv: ReceiveStats::new(),
            rate: RateMeter::new(),
            liveness: LayerLiveness::new(),
            size: None,
            last_pli: None,
            pli_answered: false,
            last_sr: None,
        }
    }
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
    /// The subscriber has named this consumer's SSRC in RTCP (a report block, NACK or PLI), so
    /// it has negotiated the stream. Until then its packets carry no transport-wide sequence
    /// number: a browser drops packets of an m-line it has not negotiated yet before its
    /// congestion feedback sees them, and the estimator would count them as lost. A `Cell`
    /// because feedback is resolved while the consumers are borrowed shared.
    confirmed: std::cell::Cell<bool>,
    /// Simulcast layers (video; audio forwards its one stream).
    layers: LayerState,
    /// When the current target's switch started waiting for a keyframe.
    switch_started: Option<Instant>,
    /// Since when the estimate has not carried even half the lowest layer (see
    /// [`PAUSE_STARVED_AFTER`]).
    starved_since: Option<Instant>,
    /// Layers whose keyframe never came when asked: not targeted again until then.
    blocked_until: [Option<Instant>; MAX_LAYERS],
    degraded: bool,
    /// The allocation gives a layer other than the wanted one because the wanted one is not
    /// live at the publisher (not a degradation: the subscriber's link is not the reason).
    fallback: bool,
    /// Time with no media forwarded although video was wanted, allowed and sent
    /// ([`Counters::video_unserved_ms`]).
    unserved: UnservedTime,
    /// When the last packet with media was sent (forwarded padding serves no video).
    last_media_out: Option<Instant>,
    /// What was last reported in [`Event::ConsumerLayersChanged`].
    reported: Option<(LayerState, bool)>,
    switches: u64,
    /// Forwarding state: `None` until the first packet (a keyframe for video) is sent.
    sync: Option<SeqSync>,
    /// The numbering of the layers forwarded recently, newest first, to map a NACKed
    /// sequence number back to the layer and packet it came from.
    history: [Option<(u16, SeqSync)>; 4],
    /// The last (newest) packet sent, to continue numbering across pause/resume and switches.
    last_out: Option<(u16, u32, Instant)>,
    /// The last VP8 picture id and TL0PICIDX sent, to continue them across switches.
    last_vp8: Option<(u16, u8)>,
    rtx_seq: u16,
    /// One answer per lost packet per round trip, however often the subscriber NACKs it.
    resend: ResendThrottle,
    packets: u64,
    bytes: u64,
    stats: StreamStats,
}

/// How a consumer's numbering relates to the producer stream (layer) it forwards.
#[derive(Clone, Copy, Debug)]
struct SeqSync {
    layer: u8,
    /// The layer's sequence number where this consumer started (or switched to it).
    start_seq: u16,
    seq_offset: u16,
    ts_offset: u32,
    /// VP8: added to the picture id (15 bits) and TL0PICIDX, so they continue across
    /// switches.
    pid_offset: u16,
    tl0_offset: u8,
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
    rtcp_keyframes: Vec<(ProducerId, u8)>,
    rtcp_resends: Vec<(ConsumerId, u16)>,
    next_tick: Instant,
    next_stats: Instant,
    /// Transports with SCTP output to flush (from commands, or a transport just verified).
    sctp_dirty: Vec<TransportId>,
    /// When the dirty transports should be flushed; `poll_timeout` returns no later.
    sctp_wake: Option<Instant>,
    next_audio_levels: Instant,
    /// The last [`Event::AudioLevels`] named someone (so one empty report follows).
    audio_levels_nonempty: bool,
    /// Where tapped producers' packets go (the recorder's ring); none: taps are refused.
    tap_sink: Option<Box<dyn crate::tap::TapSink + Send>>,
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

/// How often each subscriber's bandwidth is shared out again among its video consumers.
const ALLOCATION_INTERVAL: Duration = Duration::from_millis(100);

/// How long a switch waits for the target layer's keyframe (asking with PLIs) before giving
/// up and staying on the current layer; the layer is then not tried again for
/// [`LAYER_RETRY_AFTER`].
/// A video consumer is paused by the allocation only when the measured estimate has left it
/// less than half its lowest layer for this long; short of that it is degraded to the lowest
/// layer. A pause keeps audio alive on a link too thin for video, but a frozen tile is worse
/// than a blurry one, and right after a join the estimate is not worth one.
const PAUSE_STARVED_AFTER: Duration = Duration::from_secs(2);
const SWITCH_TIMEOUT: Duration = Duration::from_secs(4);
const LAYER_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Interval of [`Event::AudioLevels`] (the SDK's active speaker: at most every 500 ms).
/// How often a publisher transport's cap is recomputed (`uplink`).
const UPLINK_CHECK_INTERVAL: Duration = Duration::from_millis(250);
const AUDIO_LEVEL_INTERVAL: Duration = Duration::from_millis(500);

/// The share of a subscriber's estimate retransmissions may use.
const RTX_SHARE: f64 = 0.15;

/// RTP padding carries at most 255 bytes (the count is one byte).
const PADDING_PACKET: usize = 255;

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
            next_audio_levels: now + AUDIO_LEVEL_INTERVAL,
            audio_levels_nonempty: false,
            tap_sink: None,
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
            uplink_cap: UplinkCap::default(),
            next_uplink_check: now,
            next_rtcp: now + self.cfg.rtcp_interval,
            connected: false,
            remote_addrs: Vec::new(),
            sctp: SctpTransport::new(),
            sctp_early: Vec::new(),
            downlink: Downlink {
                bwe: BandwidthEstimator::new(now, BweConfig::default()),
                has_feedback: false,
                max_bitrate_bps: None,
                allocator: Allocator::new(),
                next_allocation: now,
                rtx_tokens: 0.0,
                rtx_refilled: now,
                rtt: None,
            },
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
        if params.layers.len() > MAX_LAYERS {
            return Err(ApiError::InvalidParams(format!("at most {MAX_LAYERS} simulcast layers")));
        }
        if params.layers.iter().any(|l| l.rid.is_none() && l.ssrc.is_none()) {
            return Err(ApiError::InvalidParams("a simulcast layer needs a rid or an ssrc".into()));
        }
        if !params.layers.is_empty() && params.layers.iter().any(|l| l.rid.is_some()) && params.mid.is_none() {
            return Err(ApiError::InvalidParams("rid-based simulcast needs a mid".into()));
        }
        let cache_packets = self.cfg.rtx_cache_packets;
        let layers: Vec<Layer> = if params.layers.is_empty() {
            vec![Layer::new(params.rid.clone(), params.ssrc, params.rtx_ssrc, cache_packets)]
        } else {
            params.layers.iter().map(|l| Layer::new(l.rid.clone(), l.ssrc, l.rtx_ssrc, cache_packets)).collect()
        };
        let id = ProducerId(self.next_id());
        let t = self.transports.get_mut(&transport).ok_or(ApiError::UnknownTransport(transport))?;
        let mut refs = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            for (ssrc, rtx) in [(l.ssrc, false), (l.rtx_ssrc, true)] {
                if let Some(ssrc) = ssrc {
                    if t.ssrcs.contains_key(&ssrc) || refs.iter().any(|&(s, _)| s == ssrc) {
                        return Err(ApiError::InvalidParams(format!("ssrc {ssrc} already produced on this transport")));
                    }
                    refs.push((ssrc, StreamRef { producer: id, layer: i as u8, rtx }));
                }
            }
        }
        t.ssrcs.extend(refs);
        merge_ext(&mut t.in_ext, &params.extensions);
        t.producers.push(id);
        let producer = Producer {
            id,
            transport,
            needed: vec![true; layers.len()],
            need: Default::default(),
            layers,
            consumers: Vec::new(),
            stats: StreamStats::default(),
            got_first_packet: false,
            audio_level: AudioLevelMeter::default(),
            params,
            tap: None,
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
            confirmed: std::cell::Cell::new(false),
            layers: {
                let preferred = params.preferred_layer.unwrap_or(MAX_LAYERS as u8 - 1);
                // Until the first allocation (within a tick) the consumer aims for the best live
                // layer it may have, so a subscription to a publisher sending only `q` starts
                // on `q`'s next keyframe; before any layer is live, for what it asked.
                let top = producer.layers.len() as u8 - 1;
                let target = liveness::best_available(preferred, producer.layers.len() as u8, |l| {
                    producer.layers[usize::from(l)].liveness.is_live()
                })
                .unwrap_or(preferred.min(top));
                LayerState { preferred: Some(preferred), target: Some(target), current: None }
            },
            switch_started: None,
            starved_since: None,
            blocked_until: [None; MAX_LAYERS],
            degraded: false,
            fallback: false,
            unserved: UnservedTime::default(),
            last_media_out: None,
            reported: None,
            switches: 0,
            sync: None,
            history: [None; 4],
            last_out: None,
            last_vp8: None,
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
            c.layers.current = None;
        }
        c.paused = paused;
        Ok(())
    }

    /// The highest layer a video consumer's subscriber wants (0 lowest). The allocation may
    /// grant less; a value above the producer's top layer means the top.
    pub fn set_preferred_layer(&mut self, id: ConsumerId, layer: u8) -> Result<(), ApiError> {
        let c = self.consumers.get_mut(&id).ok_or(ApiError::UnknownConsumer(id))?;
        let layer = layer.min(MAX_LAYERS as u8 - 1);
        if c.layers.preferred != Some(layer) {
            debug!(consumer = %id, layer, "preferred layer");
            c.layers.preferred = Some(layer);
        }
        // Report the layers again after this request, changed or not: the subscriber's SDK
        // takes its request as granted until told otherwise, and the layer it gets may differ
        // (a fallback to a live layer, or its bandwidth).
        c.reported = None;
        // Reallocate at the next tick rather than wait for the interval.
        if let Some(t) = self.transports.get_mut(&c.transport) {
            t.downlink.next_allocation = self.next_tick;
        }
        Ok(())
    }

    /// A producer's priority in its subscribers' bandwidth allocation (higher first).
    pub fn set_producer_priority(&mut self, id: ProducerId, priority: u8) -> Result<(), ApiError> {
        let p = self.producers.get_mut(&id).ok_or(ApiError::UnknownProducer(id))?;
        p.params.priority = priority;
        Ok(())
    }

    /// Caps what a subscriber transport is sent, in bits per second (`None`: no cap).
    pub fn set_transport_max_bitrate(&mut self, id: TransportId, max_bps: Option<u64>) -> Result<(), ApiError> {
        let t = self.transports.get_mut(&id).ok_or(ApiError::UnknownTransport(id))?;
        if max_bps == Some(0) {
            return Err(ApiError::InvalidParams("max_bitrate_bps must be positive".into()));
        }
        t.downlink.max_bitrate_bps = max_bps;
        t.downlink.next_allocation = self.next_tick;
        Ok(())
    }

    /// A consumer's layers and its transport's bandwidth estimate.
    pub fn consumer_layers(&self, id: ConsumerId) -> Result<ConsumerLayers, ApiError> {
        let c = self.consumers.get(&id).ok_or(ApiError::UnknownConsumer(id))?;
        let estimate_bps = self
            .transports
            .get(&c.transport)
            .filter(|t| t.downlink.has_feedback)
            .map(|t| t.downlink.bwe.estimate_bps());
        Ok(ConsumerLayers {
            preferred: c.layers.preferred,
            target: c.layers.target,
            current: c.layers.current,
            degraded: c.degraded,
            estimate_bps,
            switches: c.switches,
            live_layers: self.producers.get(&c.producer).map_or([false; MAX_LAYERS], |p| {
                std::array::from_fn(|i| p.layers.get(i).is_some_and(|l| l.liveness.is_live()))
            }),
            unserved_ms: c.unserved.total().as_millis() as u64,
        })
    }

    /// Where tapped producers' packets go (see [`crate::tap`]).
    pub fn set_tap_sink(&mut self, sink: Box<dyn crate::tap::TapSink + Send>) {
        self.tap_sink = Some(sink);
    }

    /// Taps a producer for recording: its packets are offered to the tap sink as `tap`.
    pub fn start_tap(&mut self, now: Instant, id: ProducerId, tap: u32, meta: String) -> Result<(), ApiError> {
        if self.tap_sink.is_none() {
            return Err(ApiError::InvalidParams("this router has no media tap (started without --tap-fd)".into()));
        }
        let p = self.producers.get_mut(&id).ok_or(ApiError::UnknownProducer(id))?;
        let old = p.tap.replace(crate::tap::Tap { id: tap, meta, next_start: now, wants_keyframe: true });
        if let Some(old) = old
            && old.id != tap
        {
            self.offer_tap(&crate::tap::TapRecord::Stop { tap: old.id, producer: id.0 });
        }
        self.tap_timers(now);
        Ok(())
    }

    /// Ends a producer's tap; a producer without one is fine (idempotent).
    pub fn stop_tap(&mut self, id: ProducerId) -> Result<(), ApiError> {
        let p = self.producers.get_mut(&id).ok_or(ApiError::UnknownProducer(id))?;
        if let Some(tap) = p.tap.take() {
            self.offer_tap(&crate::tap::TapRecord::Stop { tap: tap.id, producer: id.0 });
        }
        Ok(())
    }

    fn offer_tap(&mut self, rec: &crate::tap::TapRecord<'_>) {
        if let Some(sink) = self.tap_sink.as_mut() {
            if sink.offer(rec) {
                self.counters.tap_records += 1;
            } else {
                self.counters.tap_dropped += 1;
            }
        }
    }

    /// Repeats due `Start` records, and asks for keyframes when a new reader attached.
    fn tap_timers(&mut self, now: Instant) {
        let Some(sink) = self.tap_sink.as_mut() else { return };
        let reader_changed = sink.reader_changed();
        for p in self.producers.values_mut() {
            let Some(tap) = p.tap.as_mut() else { continue };
            if reader_changed {
                // The new reader knows no track yet: tell it before the keyframe arrives.
                tap.wants_keyframe = true;
                tap.next_start = now;
            }
            if now < tap.next_start {
                continue;
            }
            tap.next_start = now + crate::tap::START_REPEAT;
            let rec = crate::tap::TapRecord::Start {
                tap: tap.id,
                producer: p.id.0,
                codec: p.params.codec,
                clock_rate: p.params.clock_rate,
                meta: &tap.meta,
            };
            if sink.offer(&rec) {
                self.counters.tap_records += 1;
            } else {
                self.counters.tap_dropped += 1;
            }
        }
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
        if let Some(tap) = &p.tap {
            self.offer_tap(&crate::tap::TapRecord::Stop { tap: tap.id, producer: id.0 });
        }
        if let Some(t) = self.transports.get_mut(&p.transport) {
            t.producers.retain(|&x| x != id);
            t.ssrcs.retain(|_, r| r.producer != id);
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
        let stream = match t.ssrcs.get(&header.ssrc) {
            Some(&v) => v,
            None => match bind_ssrc_by_mid(t, &self.producers, buf, &header) {
                Ok(v) => v,
                Err(Unbound::UnknownRid) => {
                    self.counters.rtp_unknown_rid += 1;
                    return;
                }
                Err(Unbound::Unknown) => {
                    self.counters.rtp_unknown_ssrc += 1;
                    return;
                }
            },
        };
        let audio_level_id = t.in_ext.audio_level;
        let Some(p) = self.producers.get_mut(&stream.producer) else { return };
        let Some(layer) = p.layers.get_mut(usize::from(stream.layer)) else { return };
        if stream.rtx {
            if layer.rtx_ssrc.is_none() {
                layer.rtx_ssrc = Some(header.ssrc);
            }
            // RTX padding-only probes carry no original packet.
            let payload = &buf[header.header_len..header.header_len + header.payload_len];
            let Some(osn) = rtp::rtx_original_sequence(payload) else { return };
            let Some(media_ssrc) = layer.ssrc else { return };
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
            self.forward_media(now, stream.producer, stream.layer, &mut buf[..new_len], header, out);
        } else {
            if layer.ssrc.is_none() {
                layer.ssrc = Some(header.ssrc);
            }
            if header.payload_type != p.params.payload_type {
                // Another codec's packets on a mid we only know one payload type of.
                self.counters.rtp_unknown_ssrc += 1;
                return;
            }
            if p.params.kind == MediaKind::Audio
                && let Some(id) = audio_level_id
                && let Some(&level) = header.find_extension(buf, id).and_then(|v| v.first())
            {
                p.audio_level.on_level(now, level);
            }
            self.forward_media(now, stream.producer, stream.layer, buf, header, out);
        }
    }

    fn forward_media(
        &mut self,
        now: Instant,
        pid: ProducerId,
        layer_index: u8,
        buf: &mut [u8],
        header: rtp::RtpHeader,
        out: &mut dyn Transmit,
    ) {
        let Some(p) = self.producers.get_mut(&pid) else { return };
        let payload_end = header.header_len + header.payload_len;
        let payload = &buf[header.header_len..payload_end];
        let codec = p.params.codec;
        let keyframe = p.params.kind == MediaKind::Video && codec::is_keyframe(codec, payload);
        let vp8 = if codec == Codec::Vp8 { Vp8Descriptor::parse(payload).ok() } else { None };
        if !p.got_first_packet {
            p.got_first_packet = true;
            self.events.push_back(Event::ProducerFirstPacket { producer: pid, ssrc: header.ssrc });
        }
        let Some(layer) = p.layers.get_mut(usize::from(layer_index)) else { return };
        if layer.cache.contains(header.sequence_number) {
            // Chromium probes its uplink with RTX copies of packets already sent ("redundant
            // payloads" padding). Forwarded, subscribers' SRTP replay check drops them before
            // their congestion feedback sees them, which reads as heavy loss; counted in the
            // layer's rate, they make a 150 kbit/s layer look like 1 Mbit/s.
            self.counters.rtp_duplicates += 1;
            return;
        }
        if keyframe && header_starts_frame(codec, payload) {
            p.stats.keyframes += 1;
            let size = match (&vp8, codec) {
                (Some(d), _) => payload.get(d.header_len..).and_then(simulcast::vp8_keyframe_size),
                (None, Codec::H264) => simulcast::h264_keyframe_size(payload),
                _ => None,
            };
            if size.is_some() {
                layer.size = size;
            }
            layer.pli_answered = true;
            self.events.push_back(Event::KeyframeSeen { producer: pid });
        }
        p.stats.packets += 1;
        p.stats.bytes += buf.len() as u64;
        layer.recv.update(header.sequence_number, header.timestamp, now, p.params.clock_rate);
        layer.nack.on_packet(header.sequence_number, now, keyframe);
        layer.rate.on_packet(now, buf.len());
        layer.liveness.on_packet(now, header.timestamp, header.payload_len, p.params.clock_rate);
        // A packet the cache refuses (too large, or far out of order) just cannot be resent.
        let _ = layer.cache.insert(header.sequence_number, now, &buf[..payload_end]);
        if let Some(tap) = &p.tap
            && let Some(sink) = self.tap_sink.as_mut()
        {
            let rec = crate::tap::TapRecord::Rtp {
                tap: tap.id,
                producer: pid.0,
                layer: layer_index,
                packet: &buf[..payload_end],
            };
            if sink.offer(&rec) {
                self.counters.tap_records += 1;
            } else {
                self.counters.tap_dropped += 1;
            }
        }
        if p.params.paused {
            return;
        }
        let producer_transport = p.transport;
        let in_audio_level = self.transports.get(&producer_transport).and_then(|t| t.in_ext.audio_level);
        // Split borrows: the producer's consumer list is read while consumers and their
        // transports are mutated.
        let Engine { producers, consumers, transports, counters, events, .. } = self;
        let Some(p) = producers.get(&pid) else { return };
        for cid in &p.consumers {
            let Some(c) = consumers.get_mut(cid) else { continue };
            if c.paused {
                continue;
            }
            let sync = if c.kind == MediaKind::Video {
                match simulcast::decide(&c.layers, layer_index, keyframe) {
                    LayerDecision::Drop => continue,
                    LayerDecision::Forward => match c.sync {
                        Some(s) if s.layer == layer_index => s,
                        _ => continue,
                    },
                    LayerDecision::Switch { from, to } => {
                        let s = start_sync(c, layer_index, header.sequence_number, header.timestamp, now, vp8.as_ref());
                        c.set_sync(s);
                        c.layers.current = Some(to);
                        c.switch_started = None;
                        if from.is_some() {
                            c.switches += 1;
                            counters.layer_switches += 1;
                        }
                        debug!(consumer = %c.id, ?from, to, "layer switch");
                        events.extend(c.layers_event());
                        s
                    }
                }
            } else {
                match c.sync {
                    Some(s) => s,
                    None => {
                        let s = start_sync(c, layer_index, header.sequence_number, header.timestamp, now, None);
                        c.set_sync(s);
                        s
                    }
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
            let vp8_out = vp8.as_ref().map(|d| (d, sync.vp8_out(d)));
            let forward = Forward { seq: out_seq, ts: out_ts, rtx: None, vp8: vp8_out };
            if let Some(len) = write_forward(now, t, c, buf, &header, &forward, in_audio_level, out) {
                c.note_sent(out_seq, out_ts, now, forward.vp8.map(|(_, v)| v));
                if header.payload_len > 0 {
                    c.last_media_out = Some(now);
                }
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
            let Engine { transports, consumers, producers, counters, tap_sink, .. } = &mut *self;
            let Some(t) = transports.get_mut(&tid) else { return };
            let Transport { consumers: own_consumers, ssrcs, downlink, .. } = t;
            let consumer_by_ssrc = |ssrc: u32| {
                let c = own_consumers.iter().filter_map(|c| consumers.get(c)).find(|c| c.ssrc == ssrc);
                if let Some(c) = c {
                    c.confirmed.set(true);
                }
                c
            };
            // The layer a subscriber's keyframe request is about: the one it is switching to,
            // or the one it gets.
            let keyframe_of = |c: &Consumer| (c.producer, c.layers.target.or(c.layers.current).unwrap_or(0));
            for packet in rtcp::packets(buf) {
                let Ok(packet) = packet else {
                    counters.rtcp_malformed += 1;
                    break;
                };
                // Report blocks name the streams the subscriber receives (`Consumer::confirmed`).
                if let rtcp::RtcpPacket::SenderReport { reports, .. } | rtcp::RtcpPacket::ReceiverReport { reports, .. } =
                    &packet
                    && !own_consumers.is_empty()
                {
                    for r in reports.take(31) {
                        consumer_by_ssrc(r.ssrc);
                    }
                }
                match packet {
                    rtcp::RtcpPacket::SenderReport { ssrc, ntp_time, rtp_time, .. } => {
                        if let Some(&StreamRef { producer, layer, rtx: false }) = ssrcs.get(&ssrc)
                            && let Some(l) =
                                producers.get_mut(&producer).and_then(|p| p.layers.get_mut(usize::from(layer)))
                        {
                            l.recv.on_sender_report(ntp_time, now);
                            l.last_sr = Some((ntp_time, rtp_time, now));
                            if let Some(tap) = producers.get(&producer).and_then(|p| p.tap.as_ref())
                                && let Some(sink) = tap_sink.as_mut()
                            {
                                let rec = crate::tap::TapRecord::SenderReport {
                                    tap: tap.id,
                                    producer: producer.0,
                                    layer,
                                    ntp: ntp_time,
                                    rtp_time,
                                };
                                if sink.offer(&rec) {
                                    counters.tap_records += 1;
                                } else {
                                    counters.tap_dropped += 1;
                                }
                            }
                        }
                    }
                    rtcp::RtcpPacket::Pli { media_ssrc, .. } => {
                        counters.plis_received += 1;
                        match consumer_by_ssrc(media_ssrc) {
                            Some(c) => keyframes.push(keyframe_of(c)),
                            None => counters.feedback_unknown_ssrc += 1,
                        }
                    }
                    rtcp::RtcpPacket::Fir { entries, .. } => {
                        for (ssrc, _) in entries.take(16) {
                            counters.plis_received += 1;
                            match consumer_by_ssrc(ssrc) {
                                Some(c) => keyframes.push(keyframe_of(c)),
                                None => counters.feedback_unknown_ssrc += 1,
                            }
                        }
                    }
                    rtcp::RtcpPacket::Nack { media_ssrc, lost, .. } => {
                        let Some(c) = consumer_by_ssrc(media_ssrc) else {
                            counters.feedback_unknown_ssrc += 1;
                            continue;
                        };
                        // Bounded: one compound cannot make us resend more than this.
                        for seq in lost.take(512) {
                            counters.nacks_received += 1;
                            resends.push((c.id, seq));
                        }
                    }
                    rtcp::RtcpPacket::TransportCc(fb) => {
                        counters.twcc_feedback_received += 1;
                        let before = downlink.bwe.stats().unknown_seqs;
                        downlink.bwe.handle_twcc_feedback(now, &fb);
                        if downlink.bwe.stats().unknown_seqs != before {
                            counters.twcc_feedback_unknown += 1;
                        }
                        downlink.has_feedback = true;
                    }
                    rtcp::RtcpPacket::Remb { bitrate_bps, .. } => {
                        counters.remb_received += 1;
                        downlink.bwe.handle_remb(now, bitrate_bps);
                        downlink.has_feedback = true;
                    }
                    _ => {}
                }
            }
        }
        for &(pid, layer) in &keyframes {
            self.request_keyframe(now, pid, layer, false, out);
        }
        for &(cid, seq) in &resends {
            self.retransmit(now, cid, seq, out);
        }
        self.rtcp_keyframes = keyframes;
        self.rtcp_resends = resends;
    }

    /// Answers a subscriber's NACK for `out_seq` from the cache of the layer it came from.
    fn retransmit(&mut self, now: Instant, cid: ConsumerId, out_seq: u16, out: &mut dyn Transmit) {
        let default_rtt = self.cfg.default_rtt;
        let Engine { producers, consumers, transports, counters, .. } = self;
        let Some(c) = consumers.get_mut(&cid) else { return };
        let Some(sync) = c.sync_for(out_seq) else { return };
        let Some(p) = producers.get_mut(&c.producer) else { return };
        let Some(layer) = p.layers.get(usize::from(sync.layer)) else { return };
        let in_audio_level = transports.get(&p.transport).and_then(|t| t.in_ext.audio_level);
        let in_seq = out_seq.wrapping_sub(sync.seq_offset);
        let Some(t) = transports.get_mut(&c.transport) else { return };
        if !c.resend.allow(out_seq, now, t.downlink.rtt.unwrap_or(default_rtt)) {
            return;
        }
        let Some(original) = layer.cache.get(in_seq, now) else { return };
        let Ok(header) = rtp::parse(original) else { return };
        if !t.downlink.take_rtx_budget(now, original.len() + 40) {
            counters.retransmits_over_budget += 1;
            return;
        }
        let out_ts = header.timestamp.wrapping_add(sync.ts_offset);
        let rtx = c.rtx_payload_type.zip(c.rtx_ssrc).map(|(pt, ssrc)| {
            let seq = c.rtx_seq;
            c.rtx_seq = c.rtx_seq.wrapping_add(1);
            (pt, ssrc, seq)
        });
        let vp8 = match p.params.codec {
            Codec::Vp8 => {
                Vp8Descriptor::parse(&original[header.header_len..header.header_len + header.payload_len]).ok()
            }
            _ => None,
        };
        let vp8_out = vp8.as_ref().map(|d| (d, sync.vp8_out(d)));
        let forward = Forward { seq: out_seq, ts: out_ts, rtx, vp8: vp8_out };
        if write_forward(now, t, c, original, &header, &forward, in_audio_level, out).is_some() {
            c.stats.retransmitted += 1;
            c.stats.nacks += 1;
            counters.retransmitted += 1;
            counters.datagrams_out += 1;
        }
    }

    /// Sends the publisher a PLI for one layer, at most one per layer per `pli_throttle`, except
    /// that a request `for_switch` (a consumer of the router's own waiting to start or switch)
    /// passes when the last PLI was already answered with a keyframe: the consumer missed that
    /// one, and waiting out the window would freeze its tile for up to 500 ms more (a layer
    /// that stopped while another consumer had just asked for the layer below). Subscribers'
    /// own PLIs never pass early, so a subscriber asking in a loop still gets one per window.
    fn request_keyframe(&mut self, now: Instant, pid: ProducerId, layer: u8, for_switch: bool, out: &mut dyn Transmit) {
        let Some(p) = self.producers.get_mut(&pid) else { return };
        let Some(l) = p.layers.get_mut(usize::from(layer)) else { return };
        let in_window = l.last_pli.is_some_and(|t| now.saturating_duration_since(t) < self.cfg.pli_throttle);
        if in_window && !(for_switch && l.pli_answered) {
            self.counters.plis_throttled += 1;
            return;
        }
        let Some(media_ssrc) = l.ssrc else { return };
        let Some(t) = self.transports.get_mut(&p.transport) else { return };
        let n = rtcp::write_pli(&mut self.rtcp_scratch, t.rtcp_ssrc, media_ssrc);
        if let Ok(n) = n
            && send_rtcp(t, &self.rtcp_scratch[..n], out)
        {
            l.last_pli = Some(now);
            l.pli_answered = false;
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

    /// Runs timers: ICE consent, DTLS retransmission, NACKs, TWCC feedback, RTCP reports,
    /// bandwidth allocation and probing, audio levels.
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
        for &id in &ids {
            self.transport_timers(now, id, out);
        }
        for &id in &ids {
            self.allocate_downlink(now, id);
        }
        // Keyframe requests for consumers waiting to start or switch, and NACKs toward
        // producers.
        self.tap_timers(now);
        let pids: Vec<ProducerId> = self.producers.keys().copied().collect();
        for pid in pids {
            self.producer_timers(now, pid, out);
        }
        if now >= self.next_audio_levels {
            self.next_audio_levels = now + AUDIO_LEVEL_INTERVAL;
            let mut levels: Vec<AudioLevel> = self
                .producers
                .values()
                .filter(|p| p.params.kind == MediaKind::Audio && !p.params.paused)
                .filter_map(|p| p.audio_level.level(now).map(|level| AudioLevel { producer: p.id, level }))
                .collect();
            if !levels.is_empty() || self.audio_levels_nonempty {
                levels.sort_by(|a, b| b.level.cmp(&a.level).then(a.producer.0.cmp(&b.producer.0)));
                self.audio_levels_nonempty = !levels.is_empty();
                self.events.push_back(Event::AudioLevels { levels });
            }
        }
        if !self.cfg.stats_interval.is_zero() && now >= self.next_stats {
            self.next_stats = now + self.cfg.stats_interval;
            for p in self.producers.values() {
                let mut stats = p.stats.clone();
                stats.packets_lost = p.layers.iter().map(|l| i64::from(l.recv.cumulative_lost())).sum();
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
        let media_ssrc = t
            .producers
            .first()
            .and_then(|p| self.producers.get(p))
            .and_then(|p| p.layers.iter().find_map(|l| l.ssrc))
            .unwrap_or(0);
        while let Some(n) = t.twcc_in.poll_feedback(now, t.rtcp_ssrc, media_ssrc, &mut self.rtcp_scratch) {
            if send_rtcp(t, &self.rtcp_scratch[..n], out) {
                self.counters.datagrams_out += 1;
            } else {
                break;
            }
        }
        self.cap_uplink(now, id, out);
        let Some(t) = self.transports.get_mut(&id) else { return };
        if now >= t.next_rtcp {
            t.next_rtcp = now + self.cfg.rtcp_interval;
            let n = write_reports(now, t, &mut self.producers, &self.consumers, &mut self.rtcp_scratch);
            if n > 0 && send_rtcp(t, &self.rtcp_scratch[..n], out) {
                self.counters.datagrams_out += 1;
            }
        }
        self.send_probes(now, id, out);
    }

    /// Caps a publisher transport's send rate while layers above what consumers need have
    /// gone unneeded long enough, and lifts the cap when one is needed again (`uplink`).
    fn cap_uplink(&mut self, now: Instant, id: TransportId, out: &mut dyn Transmit) {
        let Engine { transports, producers, counters, rtcp_scratch, cfg, .. } = self;
        let Some(t) = transports.get_mut(&id) else { return };
        if t.producers.is_empty() || now < t.next_uplink_check {
            return;
        }
        t.next_uplink_check = now + UPLINK_CHECK_INTERVAL;
        let mut uplinks = Vec::with_capacity(t.producers.len());
        let mut ssrcs = Vec::new();
        for pid in &t.producers {
            let Some(p) = producers.get_mut(pid) else { continue };
            let mut layer_bps = [None; MAX_LAYERS];
            for (i, bps) in layer_bps.iter_mut().enumerate().take(p.layers.len()) {
                *bps = p.layer_bps(i, now);
            }
            let audio = p.params.kind == MediaKind::Audio;
            if !audio {
                ssrcs.extend(p.layers.iter().filter_map(|l| l.ssrc));
            }
            let stop_from = if audio {
                None
            } else {
                uplink::stop_from(now, &p.need[..p.layers.len()], cfg.stop_unneeded_layers_after)
            };
            uplinks.push(ProducerUplink { audio, layers: p.layers.len(), layer_bps, stop_from });
        }
        let wanted = uplink::cap_bps(&uplinks);
        let was_capped = t.uplink_cap.capped();
        let Some(bps) = t.uplink_cap.poll(now, wanted) else { return };
        if was_capped != t.uplink_cap.capped() {
            info!(transport = %id, cap_bps = ?wanted, "publisher send rate {}", if was_capped { "cap lifted: a stopped layer is needed again" } else { "capped: layers nobody needs stop" });
        }
        if ssrcs.is_empty() {
            return;
        }
        ssrcs.truncate(255);
        if let Ok(n) = rtcp::write_remb(rtcp_scratch, t.rtcp_ssrc, bps, &ssrcs)
            && send_rtcp(t, &rtcp_scratch[..n], out)
        {
            counters.uplink_remb_sent += 1;
            counters.datagrams_out += 1;
        }
    }

    /// Sends the padding the transport's estimator asks for, to learn whether the subscriber's
    /// link carries more than it is sent now. Padding goes on a video consumer's RTX stream
    /// (receivers discard it after counting it in their feedback); without one there is no
    /// way to probe.
    fn send_probes(&mut self, now: Instant, id: TransportId, out: &mut dyn Transmit) {
        let Engine { transports, consumers, counters, .. } = self;
        let Some(t) = transports.get_mut(&id) else { return };
        if !t.downlink.has_feedback || t.out_ext.transport_cc.is_none() {
            return;
        }
        let mut bytes = t.downlink.bwe.poll_probe_bytes(now);
        if bytes == 0 {
            return;
        }
        let prober = t.consumers.iter().copied().find(|c| {
            consumers.get(c).is_some_and(|c| {
                c.kind == MediaKind::Video
                    && c.rtx_ssrc.is_some()
                    && c.rtx_payload_type.is_some()
                    && c.last_out.is_some()
            })
        });
        let Some(c) = prober.and_then(|c| consumers.get_mut(&c)) else { return };
        // Bounded per tick, whatever the estimator asks: 40 packets are 80 Mbit/s at 10 ms.
        for _ in 0..40 {
            if bytes == 0 {
                break;
            }
            let Some(len) = write_padding(now, t, c, out) else { break };
            counters.probe_packets += 1;
            counters.datagrams_out += 1;
            bytes = bytes.saturating_sub(len);
        }
    }

    /// Shares one subscriber transport's estimate among its video consumers (every
    /// [`ALLOCATION_INTERVAL`]), gives up switches whose keyframe never came, and reports
    /// changed layers.
    fn allocate_downlink(&mut self, now: Instant, id: TransportId) {
        let Engine { transports, consumers, producers, counters, events, .. } = self;
        let Some(t) = transports.get_mut(&id) else { return };
        if now < t.downlink.next_allocation || t.consumers.is_empty() {
            return;
        }
        t.downlink.next_allocation = now + ALLOCATION_INTERVAL;
        let mut demands = Vec::new();
        let mut audio_bps = 0u64;
        for cid in &t.consumers {
            let Some(c) = consumers.get_mut(cid) else { continue };
            let Some(p) = producers.get_mut(&c.producer) else { continue };
            if c.kind == MediaKind::Audio {
                if !c.paused {
                    audio_bps += p.layers.iter_mut().filter_map(|l| l.rate.rate_bps(now)).sum::<u64>();
                }
                continue;
            }
            if let Some(target) = c.layers.target
                && c.layers.current != Some(target)
            {
                let started = *c.switch_started.get_or_insert(now);
                if now.saturating_duration_since(started) > SWITCH_TIMEOUT {
                    debug!(consumer = %c.id, target, current = ?c.layers.current, "no keyframe came: switch given up");
                    counters.layer_switch_timeouts += 1;
                    c.blocked_until[usize::from(target)] = Some(now + LAYER_RETRY_AFTER);
                    c.layers.target = c.layers.current;
                    c.switch_started = None;
                }
            } else {
                c.switch_started = None;
            }
            let mut layer_bps = [None; MAX_LAYERS];
            for (i, bps) in layer_bps.iter_mut().enumerate().take(p.layers.len()) {
                let blocked = c.blocked_until[i].is_some_and(|until| now < until);
                *bps = if blocked { None } else { p.layer_bps(i, now) };
            }
            if layer_bps.iter().all(Option::is_none) {
                // Nothing flows yet (or the publisher paused): nothing to share out, and the
                // consumer keeps its target so the first keyframe starts it.
                c.unserved.update(now, false, c.last_media_out);
                continue;
            }
            let top = p.layers.len() as u8 - 1;
            let max_layer = if c.paused { None } else { c.layers.preferred.map(|l| l.min(top)) };
            demands.push(LayerDemand { key: cid.0, priority: p.params.priority, layer_bps, max_layer });
        }
        let downlink = &mut t.downlink;
        downlink.rtt = downlink.bwe.stats().rtt;
        let wanted = crate::allocation::desired_bps(&demands) + audio_bps;
        // A quarter more than what is wanted, so a probe finds room for the next layer's
        // upgrade margin and the overhead below.
        downlink.bwe.set_desired_bps(now, wanted + wanted / 4);
        // The estimate counts what is on the wire; layer rates are RTP packets as received.
        // About 5 % goes to SRTP, UDP and IP headers and retransmissions.
        let estimate = if downlink.measured() { downlink.bwe.estimate_bps() / 20 * 19 } else { u64::MAX };
        let budget = estimate.min(downlink.max_bitrate_bps.unwrap_or(u64::MAX)).saturating_sub(audio_bps);
        let measured = downlink.measured();
        let bwe_stats = downlink.bwe.stats();
        for (a, d) in downlink.allocator.allocate(now, budget, &demands).into_iter().zip(&demands) {
            let Some(c) = consumers.get_mut(&ConsumerId(a.key)) else { continue };
            // Degrade to the lowest layer; pause only when starved (PAUSE_STARVED_AFTER).
            let a = match (a.target, d.max_layer, d.layer_bps.iter().position(Option::is_some)) {
                (None, Some(_), Some(lowest)) => {
                    let lowest_bps = d.layer_bps[lowest].unwrap_or(0);
                    if measured && budget < lowest_bps / 2 {
                        c.starved_since.get_or_insert(now);
                    } else {
                        c.starved_since = None;
                    }
                    let starved_long =
                        c.starved_since.is_some_and(|t| now.saturating_duration_since(t) >= PAUSE_STARVED_AFTER);
                    // Once paused, the allocator's margin and hold decide the resume.
                    let paused = c.layers.target.is_none();
                    if starved_long || paused {
                        if !paused {
                            debug!(consumer = %c.id, budget, lowest_bps, estimate = ?bwe_stats, "paused: the link does not carry the lowest layer");
                        }
                        a
                    } else {
                        crate::allocation::Allocation { target: Some(lowest as u8), degraded: true, ..a }
                    }
                }
                _ => {
                    c.starved_since = None;
                    a
                }
            };
            // The wanted layer is not live at the publisher: the allocation aims below it (or
            // above, when nothing below is), which is not the subscriber's link's doing.
            let fallback = d.max_layer.is_some() && crate::allocation::best_wanted_layer(d) != d.max_layer;
            if fallback != c.fallback {
                c.fallback = fallback;
                if fallback {
                    counters.simulcast_fallbacks += 1;
                }
                debug!(consumer = %c.id, wanted = ?d.max_layer, target = ?a.target, fallback, "wanted layer {}", if fallback { "not live: falling back" } else { "live again" });
            }
            let wants = d.max_layer.is_some() && a.target.is_some();
            let unserved = c.unserved.update(now, wants, c.last_media_out);
            counters.video_unserved_ms += unserved.as_millis() as u64;
            if c.layers.target != a.target {
                trace!(consumer = %c.id, from = ?c.layers.target, to = ?a.target, budget, "allocation");
                c.layers.target = a.target;
                c.switch_started = None;
                if a.target.is_none() {
                    // Paused by the allocation: resume later on a keyframe, numbering continued.
                    c.layers.current = None;
                    c.sync = None;
                }
            }
            c.degraded = a.degraded;
            events.extend(c.layers_event());
        }
    }

    fn producer_timers(&mut self, now: Instant, pid: ProducerId, out: &mut dyn Transmit) {
        let rtt = self.cfg.default_rtt;
        let Some(p) = self.producers.get_mut(&pid) else { return };
        if p.layers.len() > 1 {
            self.judge_layers(now, pid);
        }
        let Some(p) = self.producers.get_mut(&pid) else { return };
        let mut keyframes = [false; MAX_LAYERS];
        for (i, layer) in p.layers.iter_mut().enumerate() {
            let Some(media_ssrc) = layer.ssrc else { continue };
            self.nack_scratch.clear();
            if let Some(seqs) = layer.nack.poll_nacks(now, rtt) {
                self.nack_scratch.extend_from_slice(seqs);
            }
            keyframes[i] = layer.nack.needs_keyframe();
            if !self.nack_scratch.is_empty()
                && let Some(t) = self.transports.get_mut(&p.transport)
                && let Ok(n) = rtcp::write_nack(&mut self.rtcp_scratch, t.rtcp_ssrc, media_ssrc, &self.nack_scratch)
                && send_rtcp(t, &self.rtcp_scratch[..n], out)
            {
                p.stats.nacks += self.nack_scratch.len() as u64;
                self.counters.nacks_sent += 1;
                self.counters.datagrams_out += 1;
            }
        }
        // A consumer waiting to start or to switch needs a keyframe of its target layer.
        // A fixed array: this runs every tick for every producer.
        let mut needed = [false; MAX_LAYERS];
        let mut for_switch = [false; MAX_LAYERS];
        for c in p.consumers.iter().filter_map(|c| self.consumers.get(c)) {
            if c.kind != MediaKind::Video || c.paused {
                continue;
            }
            if let Some(target) = c.layers.target
                && c.layers.current != Some(target)
                && let Some(k) = for_switch.get_mut(usize::from(target))
            {
                *k = true;
            }
            // Every layer up to the preferred one may be forwarded as bandwidth changes.
            if let Some(pref) = c.layers.preferred {
                for n in needed.iter_mut().take(usize::from(pref) + 1) {
                    *n = true;
                }
            }
        }
        // A recording takes the top layer; it must keep coming even if no subscriber wants it.
        if let Some(tap) = p.tap.as_mut() {
            needed.iter_mut().for_each(|n| *n = true);
            if p.got_first_packet && std::mem::take(&mut tap.wants_keyframe) {
                keyframes.iter_mut().for_each(|k| *k = true);
            }
        }
        let needed = &needed[..p.layers.len()];
        for (need, &n) in p.need.iter_mut().zip(needed) {
            need.update(now, n);
        }
        if p.layers.len() > 1 && needed != p.needed.as_slice() {
            debug!(producer = %pid, ?needed, "layers needed");
            p.needed = needed.to_vec();
            self.events.push_back(Event::LayersNeeded { producer: pid, needed: p.needed.clone() });
        }
        if p.params.kind == MediaKind::Video && p.got_first_packet {
            for (i, (k, switch)) in keyframes.into_iter().zip(for_switch).enumerate() {
                if k || switch {
                    self.request_keyframe(now, pid, i as u8, switch, out);
                }
            }
        }
    }
}

impl Consumer {
    /// Starts forwarding with this numbering (at the start, on resume, or at a switch).
    fn set_sync(&mut self, s: SeqSync) {
        self.sync = Some(s);
        let first_out = s.start_seq.wrapping_add(s.seq_offset);
        self.history.rotate_right(1);
        self.history[0] = Some((first_out, s));
    }

    /// The numbering an outgoing sequence number was sent with (for NACKs after a switch).
    fn sync_for(&self, out_seq: u16) -> Option<SeqSync> {
        self.history.iter().flatten().find(|(first, _)| out_seq.wrapping_sub(*first) as i16 >= 0).map(|&(_, s)| s)
    }

    /// Remembers the newest packet sent; a late (reordered) one does not move it back.
    fn note_sent(&mut self, seq: u16, ts: u32, now: Instant, vp8: Option<(u16, u8)>) {
        let newer = self.last_out.is_none_or(|(last, _, _)| seq.wrapping_sub(last) as i16 > 0);
        if newer {
            self.last_out = Some((seq, ts, now));
            if vp8.is_some() {
                self.last_vp8 = vp8;
            }
        }
    }

    /// An [`Event::ConsumerLayersChanged`] when the layers changed since the last report.
    fn layers_event(&mut self) -> Option<Event> {
        if self.kind != MediaKind::Video {
            return None;
        }
        let now = (self.layers, self.degraded);
        if self.reported == Some(now) {
            return None;
        }
        self.reported = Some(now);
        Some(Event::ConsumerLayersChanged {
            consumer: self.id,
            preferred: self.layers.preferred,
            target: self.layers.target,
            current: self.layers.current,
            degraded: self.degraded,
        })
    }
}

impl SeqSync {
    /// The VP8 picture id and TL0PICIDX to send for a packet with this descriptor.
    fn vp8_out(&self, d: &Vp8Descriptor) -> (u16, u8) {
        let pid = d.picture_id.unwrap_or(0).wrapping_add(self.pid_offset) & 0x7fff;
        let tl0 = d.tl0_pic_idx.unwrap_or(0).wrapping_add(self.tl0_offset);
        (pid, tl0)
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

/// Why an unknown SSRC could not be bound to a producer.
enum Unbound {
    /// No producer's mid, or no extensions to tell.
    Unknown,
    /// The mid names a producer, but none of its layers has this rid.
    UnknownRid,
}

/// Binds an unknown SSRC to the producer whose mid its header extensions name, and to the
/// layer its rid (or, for RTX, repaired rid) names.
fn bind_ssrc_by_mid(
    t: &mut Transport,
    producers: &FastMap<ProducerId, Producer>,
    buf: &[u8],
    header: &rtp::RtpHeader,
) -> Result<StreamRef, Unbound> {
    let mid = t.in_ext.mid.and_then(|id| header.find_extension(buf, id)).ok_or(Unbound::Unknown)?;
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
        return Err(Unbound::Unknown);
    }
    let (pid, p) = t
        .producers
        .iter()
        .find_map(|pid| {
            producers.get(pid).filter(|p| p.params.mid.as_deref().map(str::as_bytes) == Some(mid)).map(|p| (*pid, p))
        })
        .ok_or(Unbound::Unknown)?;
    let simulcast = p.layers.iter().any(|l| l.rid.is_some());
    let layer = match rid {
        _ if !simulcast && p.layers.len() == 1 => 0,
        Some(rid) => {
            p.layers.iter().position(|l| l.rid.as_deref().map(str::as_bytes) == Some(rid)).ok_or(Unbound::UnknownRid)?
        }
        // A simulcast stream must say which layer it is.
        None => return Err(Unbound::Unknown),
    };
    let r = StreamRef { producer: pid, layer: layer as u8, rtx: is_rtx };
    t.ssrcs.insert(header.ssrc, r);
    Ok(r)
}

fn start_sync(c: &Consumer, layer: u8, in_seq: u16, in_ts: u32, now: Instant, vp8: Option<&Vp8Descriptor>) -> SeqSync {
    // VP8: continue the picture id and TL0PICIDX after the last ones sent (a new stream would
    // look to the decoder like lost frames).
    let (pid_offset, tl0_offset) = match (c.last_vp8, vp8) {
        (Some((last_pid, last_tl0)), Some(d)) => (
            last_pid.wrapping_add(1).wrapping_sub(d.picture_id.unwrap_or(0)) & 0x7fff,
            last_tl0.wrapping_add(1).wrapping_sub(d.tl0_pic_idx.unwrap_or(0)),
        ),
        _ => (0, 0),
    };
    match c.last_out {
        // Continue after a pause or another layer: next sequence number, and a timestamp
        // advanced by the wall-clock time that passed, so the receiver's jitter buffer sees
        // real time.
        Some((last_seq, last_ts, at)) => {
            let elapsed = now.saturating_duration_since(at);
            let ticks = (elapsed.as_secs_f64() * c.clock_rate as f64) as u32;
            let next_ts = last_ts.wrapping_add(ticks.max(1));
            SeqSync {
                layer,
                start_seq: in_seq,
                seq_offset: last_seq.wrapping_add(1).wrapping_sub(in_seq),
                ts_offset: next_ts.wrapping_sub(in_ts),
                pid_offset,
                tl0_offset,
            }
        }
        None => {
            let first_seq = random_u32() as u16 & 0x7fff;
            let first_ts = random_u32();
            SeqSync {
                layer,
                start_seq: in_seq,
                seq_offset: first_seq.wrapping_sub(in_seq),
                ts_offset: first_ts.wrapping_sub(in_ts),
                pid_offset,
                tl0_offset,
            }
        }
    }
}

/// How one packet goes out to a consumer.
struct Forward<'a> {
    seq: u16,
    ts: u32,
    /// (payload type, ssrc, seq): send it as an RTX packet instead.
    rtx: Option<(u8, u32, u16)>,
    /// VP8: the descriptor of the original payload, and the picture id and TL0PICIDX to write.
    vp8: Option<(&'a Vp8Descriptor, (u16, u8))>,
}

/// The header extensions of an outgoing packet (mid, transport-wide sequence number,
/// abs-send-time, audio level): at most five, in a fixed buffer.
struct OutExtensions {
    buf: [u8; 64],
    ranges: [(u8, std::ops::Range<usize>); 5],
    n: usize,
    used: usize,
    /// The transport-wide sequence number stamped, for the bandwidth estimator.
    twcc_seq: Option<u16>,
}

impl OutExtensions {
    /// `twcc`: stamp a transport-wide sequence number (see `Consumer::confirmed`).
    fn new(now: Instant, t: &mut Transport, mid: Option<&str>, twcc: bool) -> OutExtensions {
        let mut e = OutExtensions { buf: [0; 64], ranges: Default::default(), n: 0, used: 0, twcc_seq: None };
        if let (Some(id), Some(mid)) = (t.out_ext.mid, mid) {
            e.push(id, mid.as_bytes());
        }
        if let Some(id) = t.out_ext.transport_cc.filter(|_| twcc) {
            let seq = t.twcc_out_seq;
            t.twcc_out_seq = t.twcc_out_seq.wrapping_add(1);
            e.push(id, &seq.to_be_bytes());
            e.twcc_seq = Some(seq);
        }
        if let Some(id) = t.out_ext.abs_send_time {
            e.push(id, &abs_send_time(now));
        }
        e
    }

    fn push(&mut self, id: u8, bytes: &[u8]) {
        if self.used + bytes.len() <= self.buf.len() && self.n < self.ranges.len() {
            self.buf[self.used..self.used + bytes.len()].copy_from_slice(bytes);
            self.ranges[self.n] = (id, self.used..self.used + bytes.len());
            self.n += 1;
            self.used += bytes.len();
        }
    }

    fn list(&self) -> [(u8, &[u8]); 5] {
        std::array::from_fn(|i| (self.ranges[i].0, &self.buf[self.ranges[i].1.clone()]))
    }
}

/// Writes one outgoing RTP packet for a consumer straight into the send buffer and encrypts it
/// there.
#[allow(clippy::too_many_arguments)]
fn write_forward(
    now: Instant,
    t: &mut Transport,
    c: &Consumer,
    original: &[u8],
    header: &rtp::RtpHeader,
    fwd: &Forward<'_>,
    in_audio_level: Option<u8>,
    out: &mut dyn Transmit,
) -> Option<usize> {
    let dst = t.remote()?;
    t.srtp_out.as_ref()?;
    let mut exts = OutExtensions::new(now, t, c.mid.as_deref(), c.confirmed.get());
    // Audio level is the publisher's measurement: copy it through.
    if let (Some(out_id), Some(in_id)) = (t.out_ext.audio_level, in_audio_level)
        && let Some(v) = header.find_extension(original, in_id)
    {
        exts.push(out_id, &v[..v.len().min(1)]);
    }
    let list = exts.list();
    let (pt, ssrc, seq) = match fwd.rtx {
        Some((pt, ssrc, seq)) => (pt, ssrc, seq),
        None => (c.payload_type, c.ssrc, fwd.seq),
    };
    let fields = rtp::HeaderFields {
        marker: header.marker,
        payload_type: pt,
        sequence_number: seq,
        timestamp: fwd.ts,
        ssrc,
        csrcs: &[],
    };
    let srtp = t.srtp_out.as_mut()?;
    let slot = out.buffer();
    let hlen = rtp::write_header(slot, &fields, &list[..exts.n]).ok()?;
    let payload = &original[header.header_len..header.header_len + header.payload_len];
    let mut plen = payload.len();
    let overhead = srtp.profile().rtp_overhead();
    let payload_at = if fwd.rtx.is_some() { hlen + 2 } else { hlen };
    if payload_at + plen + overhead > slot.len() {
        return None;
    }
    if fwd.rtx.is_some() {
        slot[hlen..hlen + 2].copy_from_slice(&fwd.seq.to_be_bytes());
        plen += 2;
    }
    slot[payload_at..payload_at + payload.len()].copy_from_slice(payload);
    if let Some((d, (pid, tl0))) = fwd.vp8 {
        let copied = &mut slot[payload_at..payload_at + payload.len()];
        // Fields the descriptor lacks are left alone.
        let _ = d.set_picture_id(copied, pid);
        let _ = d.set_tl0_pic_idx(copied, tl0);
    }
    let len = srtp.protect_rtp(slot, hlen + plen).ok()?;
    out.commit(dst, len);
    if let Some(seq) = exts.twcc_seq {
        t.downlink.bwe.on_packet_sent(now, seq, len, false);
    }
    Some(len)
}

/// Writes one padding-only RTX packet (a bandwidth probe) for a consumer. Returns its size.
fn write_padding(now: Instant, t: &mut Transport, c: &mut Consumer, out: &mut dyn Transmit) -> Option<usize> {
    let dst = t.remote()?;
    let (pt, ssrc) = c.rtx_payload_type.zip(c.rtx_ssrc)?;
    let (_, last_ts, _) = c.last_out?;
    t.srtp_out.as_ref()?;
    if !c.confirmed.get() {
        // Padding the subscriber's feedback would never see is no probe.
        return None;
    }
    let exts = OutExtensions::new(now, t, c.mid.as_deref(), true);
    let list = exts.list();
    let seq = c.rtx_seq;
    c.rtx_seq = c.rtx_seq.wrapping_add(1);
    let fields = rtp::HeaderFields {
        marker: false,
        payload_type: pt,
        sequence_number: seq,
        timestamp: last_ts,
        ssrc,
        csrcs: &[],
    };
    let srtp = t.srtp_out.as_mut()?;
    let slot = out.buffer();
    let hlen = rtp::write_header(slot, &fields, &list[..exts.n]).ok()?;
    if hlen + PADDING_PACKET + srtp.profile().rtp_overhead() > slot.len() {
        return None;
    }
    // RFC 3550 5.1: P bit, then padding whose last byte counts itself and the rest.
    slot[0] |= 0x20;
    slot[hlen..hlen + PADDING_PACKET].fill(0);
    slot[hlen + PADDING_PACKET - 1] = PADDING_PACKET as u8;
    let len = srtp.protect_rtp(slot, hlen + PADDING_PACKET).ok()?;
    out.commit(dst, len);
    if let Some(seq) = exts.twcc_seq {
        t.downlink.bwe.on_packet_sent(now, seq, len, true);
    }
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
        let Some(p) = producers.get_mut(pid) else { continue };
        for l in &mut p.layers {
            if let (Some(ssrc), Some(b)) = (l.ssrc, l.recv.report_block(now)) {
                blocks.push(rtcp::ReportBlock { ssrc, ..b });
            }
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
        let Some((sr_ntp, sr_rtp, arrived)) =
            producers.get(&c.producer).and_then(|p| p.layers.get(usize::from(sync.layer))).and_then(|l| l.last_sr)
        else {
            continue;
        };
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
