//! The entities of a shard (transports, producers and their layers, consumers) and their small helpers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use schema::api::{Event, ExtensionIds, MediaKind, ProduceParams, StreamStats};
use schema::codec::Codec;
use schema::ids::{ConsumerId, ProducerId, TransportId};
use schema::layers::MAX_LAYERS;

use crate::allocation::Allocator;
use crate::bwe::BandwidthEstimator;
use crate::dtls::DtlsState;
use crate::ice::IceLite;
use crate::ids::FastMap;
use crate::liveness::{LayerLiveness, UnservedTime};
use crate::meters::{AudioLevelMeter, RateMeter};
use crate::nack::NackGenerator;
use crate::rtx_cache::{ResendThrottle, RetransmissionCache, RtxCacheConfig};
use crate::sctp::SctpTransport;
use crate::simulcast::LayerState;
use crate::srtp::SrtpSession;
use crate::stats::ReceiveStats;
use crate::twcc::TwccReceiver;
use crate::uplink::{LayerNeed, UplinkCap};

pub(super) struct Transport {
    pub(super) ice: IceLite,
    pub(super) dtls: DtlsState,
    pub(super) srtp_out: Option<SrtpSession>,
    pub(super) srtp_in: Option<SrtpSession>,
    /// Our SSRC in RTCP feedback sent on this transport.
    pub(super) rtcp_ssrc: u32,
    /// Header extension ids the client uses on this transport (BUNDLE: one set per transport).
    pub(super) in_ext: ExtensionIds,
    pub(super) out_ext: ExtensionIds,
    /// Incoming SSRC → producer, its layer, and `true` for the RTX stream of that layer.
    pub(super) ssrcs: FastMap<u32, StreamRef>,
    pub(super) producers: Vec<ProducerId>,
    pub(super) consumers: Vec<ConsumerId>,
    pub(super) twcc_in: TwccReceiver,
    /// Transport-wide sequence number of our next outgoing RTP packet.
    pub(super) twcc_out_seq: u16,
    pub(super) next_rtcp: Instant,
    pub(super) connected: bool,
    pub(super) remote_addrs: Vec<SocketAddr>,
    /// Data channels: the SCTP association over DTLS application data.
    pub(super) sctp: SctpTransport,
    /// SCTP packets that arrived before the transport was verified (fingerprint unknown).
    pub(super) sctp_early: Vec<Vec<u8>>,
    /// What this transport may be sent (as a subscriber) and how it is shared out.
    pub(super) downlink: Downlink,
    /// The send-rate cap on this transport as a publisher (`uplink`).
    pub(super) uplink_cap: UplinkCap,
    pub(super) next_uplink_check: Instant,
}

/// A subscriber's side of bandwidth: its estimate and the allocation of its video consumers.
pub(super) struct Downlink {
    pub(super) bwe: BandwidthEstimator,
    /// Congestion feedback (transport-cc or REMB) has arrived: until then the estimate is a
    /// guess and the allocation does not hold layers back.
    pub(super) has_feedback: bool,
    /// The role's cap (`maxSubsBitRate`).
    pub(super) max_bitrate_bps: Option<u64>,
    pub(super) allocator: Allocator,
    pub(super) next_allocation: Instant,
    /// Bytes of retransmission the subscriber's link may take now (a token bucket refilled at
    /// [`RTX_SHARE`] of the estimate): resending into a congested link makes more loss, and
    /// the subscriber NACKs that too.
    pub(super) rtx_tokens: f64,
    pub(super) rtx_refilled: Instant,
    /// The round trip the estimator measured, for pacing resends of one packet.
    pub(super) rtt: Option<Duration>,
}

/// Where an incoming SSRC goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StreamRef {
    pub(super) producer: ProducerId,
    pub(super) layer: u8,
    pub(super) rtx: bool,
}
impl Transport {
    pub(super) fn remote(&self) -> Option<SocketAddr> {
        self.ice.nominated()
    }
}

pub(super) struct Producer {
    pub(super) id: ProducerId,
    pub(super) transport: TransportId,
    pub(super) params: ProduceParams,
    /// One for a plain track; the simulcast layers, lowest first, otherwise.
    pub(super) layers: Vec<Layer>,
    pub(super) consumers: Vec<ConsumerId>,
    pub(super) stats: StreamStats,
    pub(super) got_first_packet: bool,
    pub(super) audio_level: AudioLevelMeter,
    /// The layers some consumer may need, as last reported ([`Event::LayersNeeded`]).
    pub(super) needed: Vec<bool>,
    /// Since when each layer has gone unneeded, to stop it at the publisher (`uplink`).
    pub(super) need: [LayerNeed; MAX_LAYERS],
    /// Recording and compositing: this producer's packets also go to these taps' sinks.
    pub(super) taps: Vec<crate::tap::Tap>,
}

/// One RTP stream of a producer (its only one, or one simulcast layer): numbering, loss and
/// retransmission are per stream.
pub(super) struct Layer {
    pub(super) rid: Option<String>,
    pub(super) ssrc: Option<u32>,
    pub(super) rtx_ssrc: Option<u32>,
    pub(super) cache: RetransmissionCache,
    pub(super) nack: NackGenerator,
    pub(super) recv: ReceiveStats,
    pub(super) rate: RateMeter,
    /// Whether the layer carries frames now (not just padding): simulcast fallback.
    pub(super) liveness: LayerLiveness,
    /// Width and height from the last keyframe (VP8).
    pub(super) size: Option<(u16, u16)>,
    pub(super) last_pli: Option<Instant>,
    /// A keyframe arrived since the last PLI: a consumer that starts waiting for a switch now
    /// missed it and may ask again at once (see [`Engine::request_keyframe`]).
    pub(super) pli_answered: bool,
    /// The publisher's last sender report: NTP time, RTP time, when it arrived. Consumers'
    /// sender reports are derived from it, so subscribers keep the publisher's A/V sync.
    pub(super) last_sr: Option<(u64, u32, Instant)>,
}

impl Layer {
    pub(super) fn new(rid: Option<String>, ssrc: Option<u32>, rtx_ssrc: Option<u32>, cache_packets: usize) -> Layer {
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

pub(super) struct Consumer {
    pub(super) id: ConsumerId,
    pub(super) transport: TransportId,
    pub(super) producer: ProducerId,
    pub(super) kind: MediaKind,
    pub(super) codec: Codec,
    pub(super) clock_rate: u32,
    pub(super) ssrc: u32,
    pub(super) payload_type: u8,
    pub(super) rtx_ssrc: Option<u32>,
    pub(super) rtx_payload_type: Option<u8>,
    pub(super) mid: Option<String>,
    pub(super) paused: bool,
    /// The subscriber has named this consumer's SSRC in RTCP (a report block, NACK or PLI), so
    /// it has negotiated the stream. Until then its packets carry no transport-wide sequence
    /// number: a browser drops packets of an m-line it has not negotiated yet before its
    /// congestion feedback sees them, and the estimator would count them as lost. A `Cell`
    /// because feedback is resolved while the consumers are borrowed shared.
    pub(super) confirmed: std::cell::Cell<bool>,
    /// Simulcast layers (video; audio forwards its one stream).
    pub(super) layers: LayerState,
    /// When the current target's switch started waiting for a keyframe.
    pub(super) switch_started: Option<Instant>,
    /// Since when the estimate has not carried even half the lowest layer (see
    /// [`PAUSE_STARVED_AFTER`](super::downlink::PAUSE_STARVED_AFTER)).
    pub(super) starved_since: Option<Instant>,
    /// Layers whose keyframe never came when asked: not targeted again until then.
    pub(super) blocked_until: [Option<Instant>; MAX_LAYERS],
    pub(super) degraded: bool,
    /// The allocation gives a layer other than the wanted one because the wanted one is not
    /// live at the publisher (not a degradation: the subscriber's link is not the reason).
    pub(super) fallback: bool,
    /// Time with no media forwarded although video was wanted, allowed and sent
    /// ([`Counters::video_unserved_ms`]).
    pub(super) unserved: UnservedTime,
    /// When the last packet with media was sent (forwarded padding serves no video).
    pub(super) last_media_out: Option<Instant>,
    /// What was last reported in [`Event::ConsumerLayersChanged`].
    pub(super) reported: Option<(LayerState, bool)>,
    pub(super) switches: u64,
    /// Forwarding state: `None` until the first packet (a keyframe for video) is sent.
    pub(super) sync: Option<SeqSync>,
    /// The numbering of the layers forwarded recently, newest first, to map a NACKed
    /// sequence number back to the layer and packet it came from.
    pub(super) history: [Option<(u16, SeqSync)>; 4],
    /// The last (newest) packet sent, to continue numbering across pause/resume and switches.
    pub(super) last_out: Option<(u16, u32, Instant)>,
    /// The last VP8 picture id and TL0PICIDX sent, to continue them across switches.
    pub(super) last_vp8: Option<(u16, u8)>,
    /// The sequence number and timestamp of the first packet ever sent (random, RFC 3550
    /// 5.1), drawn at creation so the forwarding decision needs no random source.
    pub(super) first_out: (u16, u32),
    pub(super) rtx_seq: u16,
    /// One answer per lost packet per round trip, however often the subscriber NACKs it.
    pub(super) resend: ResendThrottle,
    pub(super) packets: u64,
    pub(super) bytes: u64,
    pub(super) stats: StreamStats,
}

/// What a new consumer is made of (from its `consume` command and producer); the rest of its
/// state starts empty in [`Consumer::new`].
pub(super) struct ConsumerSetup {
    pub(super) id: ConsumerId,
    pub(super) transport: TransportId,
    pub(super) producer: ProducerId,
    pub(super) kind: MediaKind,
    pub(super) codec: Codec,
    pub(super) clock_rate: u32,
    pub(super) ssrc: u32,
    pub(super) payload_type: u8,
    pub(super) rtx_ssrc: Option<u32>,
    pub(super) rtx_payload_type: Option<u8>,
    pub(super) mid: Option<String>,
    pub(super) paused: bool,
    pub(super) layers: LayerState,
    pub(super) first_out: (u16, u32),
    pub(super) rtx_seq: u16,
    /// Sequence numbers the resend throttle tracks (the retransmission cache's capacity).
    pub(super) resend_window: usize,
}

impl Consumer {
    pub(super) fn new(s: ConsumerSetup) -> Consumer {
        Consumer {
            id: s.id,
            transport: s.transport,
            producer: s.producer,
            kind: s.kind,
            codec: s.codec,
            clock_rate: s.clock_rate,
            ssrc: s.ssrc,
            payload_type: s.payload_type,
            rtx_ssrc: s.rtx_ssrc,
            rtx_payload_type: s.rtx_payload_type,
            mid: s.mid,
            paused: s.paused,
            confirmed: std::cell::Cell::new(false),
            layers: s.layers,
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
            first_out: s.first_out,
            rtx_seq: s.rtx_seq,
            resend: ResendThrottle::new(s.resend_window),
            packets: 0,
            bytes: 0,
            stats: StreamStats::default(),
        }
    }
}

/// How a consumer's numbering relates to the producer stream (layer) it forwards.
#[derive(Clone, Copy, Debug)]
pub(super) struct SeqSync {
    pub(super) layer: u8,
    /// The layer's sequence number where this consumer started (or switched to it).
    pub(super) start_seq: u16,
    pub(super) seq_offset: u16,
    pub(super) ts_offset: u32,
    /// VP8: added to the picture id (15 bits) and TL0PICIDX, so they continue across
    /// switches.
    pub(super) pid_offset: u16,
    pub(super) tl0_offset: u8,
}

impl Consumer {
    /// An [`Event::ConsumerLayersChanged`] when the layers changed since the last report.
    pub(super) fn layers_event(&mut self) -> Option<Event> {
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
