//! The command API: create, connect, produce, consume, pause, prefer, cap and close, and stats getters.

use std::time::Instant;

use schema::api::{
    ApiError, CloseReason, ConnectParams, ConsumeParams, ConsumerInfo, ConsumerLayers, Event, ExtensionIds, LinkStats,
    ProduceParams, StreamStats, TransportInfo,
};
use schema::ids::{ConsumerId, ProducerId, TransportId};
use schema::layers::MAX_LAYERS;
use tracing::debug;

use super::objects::{Consumer, ConsumerSetup, Downlink, Layer, Producer, StreamRef, Transport};
use super::{Engine, random_u32};
use crate::allocation::Allocator;
use crate::bwe::{BandwidthEstimator, BweConfig};
use crate::dtls::{DtlsState, Fingerprint};
use crate::ice::{IceCredentials, IceLite};
use crate::ids::FastMap;
use crate::liveness;
use crate::meters::AudioLevelMeter;
use crate::sctp::SctpTransport;
use crate::simulcast::LayerState;
use crate::twcc::TwccReceiver;
use crate::uplink::UplinkCap;

impl Engine {
    /// Creates a transport: ICE-lite credentials, DTLS server, the shard's candidates.
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
            candidates: self.cfg.candidates.clone(),
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
            taps: Vec::new(),
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
        let consumer = Consumer::new(ConsumerSetup {
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
            first_out: (random_u32() as u16 & 0x7fff, random_u32()),
            rtx_seq: random_u32() as u16,
            resend_window: 512,
        });
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
    /// How the link toward a transport's peer is doing, from its congestion feedback.
    pub fn transport_link_stats(&self, id: TransportId) -> Result<LinkStats, ApiError> {
        let t = self.transports.get(&id).ok_or(ApiError::UnknownTransport(id))?;
        let bwe = t.downlink.bwe.stats();
        Ok(LinkStats {
            estimate_bps: t.downlink.has_feedback.then(|| t.downlink.bwe.estimate_bps()),
            loss_fraction: bwe.loss_fraction,
            rtt_ms: bwe.rtt.map(|d| d.as_millis() as u64),
            feedbacks: bwe.feedbacks,
        })
    }

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
        self.tap_sinks
            .offer_each(&p.taps, &mut self.counters, |tap| schema::tap::TapRecord::Stop { tap, producer: id.0 });
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

    pub(super) fn close_transport_with(&mut self, id: TransportId, reason: CloseReason) -> Result<(), ApiError> {
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
}

pub(super) fn merge_ext(into: &mut ExtensionIds, from: &ExtensionIds) {
    macro_rules! take {
        ($($f:ident),*) => { $( if from.$f.is_some() { into.$f = from.$f; } )* };
    }
    take!(mid, rid, repaired_rid, abs_send_time, transport_cc, audio_level, video_orientation);
}
