//! RTP out: a producer packet counted, cached and forwarded to each consumer, written and encrypted in place.

use std::time::Instant;

use schema::api::{Event, MediaKind};
use schema::codec::Codec;
use schema::ids::ProducerId;
use tracing::debug;

use super::forwarder::{IncomingPacket, Switch, Translation};
use super::objects::{Consumer, Transport};
use super::{Engine, Transmit};
use crate::codec::{self, Vp8Descriptor};
use crate::rtp;

/// RTP padding carries at most 255 bytes (the count is one byte).
const PADDING_PACKET: usize = 255;

impl Engine {
    pub(super) fn forward_media(
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
                (Some(d), _) => payload.get(d.header_len..).and_then(codec::vp8_keyframe_size),
                (None, Codec::H264) => codec::h264_keyframe_size(payload),
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
        if !p.taps.is_empty() {
            let packet = &buf[..payload_end];
            self.tap_sinks.offer_each(&p.taps, &mut self.counters, |tap| schema::tap::TapRecord::Rtp {
                tap,
                producer: pid.0,
                layer: layer_index,
                packet,
            });
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
        let packet = IncomingPacket {
            layer: layer_index,
            seq: header.sequence_number,
            ts: header.timestamp,
            marker: header.marker,
            keyframe,
            padding_only: header.payload_len == 0,
            vp8: vp8.as_ref(),
        };
        for cid in &p.consumers {
            let Some(c) = consumers.get_mut(cid) else { continue };
            let Translation::Forward(fwd) = c.translate(&packet, now) else { continue };
            if let Some(Switch { from, to }) = fwd.switched {
                if from.is_some() {
                    counters.layer_switches += 1;
                }
                debug!(consumer = %c.id, ?from, to, "layer switch");
                events.extend(c.layers_event());
            }
            let Some(t) = transports.get_mut(&c.transport) else { continue };
            let outgoing =
                Outgoing { seq: fwd.seq, ts: fwd.ts, marker: fwd.marker, rtx: None, vp8: vp8.as_ref().zip(fwd.vp8) };
            if let Some(len) = write_forward(now, t, c, buf, &header, &outgoing, in_audio_level, out) {
                c.note_sent(fwd.seq, fwd.ts, now, fwd.vp8);
                if fwd.media {
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
}

/// Whether a keyframe packet is the first packet of its frame (for counting frames, not packets).
pub(super) fn header_starts_frame(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => payload.first().is_some_and(|b| b & 0x10 != 0),
        _ => true,
    }
}

/// How one packet goes out to a consumer.
pub(super) struct Outgoing<'a> {
    pub(super) seq: u16,
    pub(super) ts: u32,
    pub(super) marker: bool,
    /// (payload type, ssrc, seq): send it as an RTX packet instead.
    pub(super) rtx: Option<(u8, u32, u16)>,
    /// VP8: the descriptor of the original payload, and the picture id and TL0PICIDX to write.
    pub(super) vp8: Option<(&'a Vp8Descriptor, (u16, u8))>,
}

/// The header extensions of an outgoing packet (mid, transport-wide sequence number,
/// abs-send-time, audio level): at most five, in a fixed buffer.
pub(super) struct OutExtensions {
    buf: [u8; 64],
    ranges: [(u8, std::ops::Range<usize>); 5],
    n: usize,
    used: usize,
    /// The transport-wide sequence number stamped, for the bandwidth estimator.
    twcc_seq: Option<u16>,
}

impl OutExtensions {
    /// `twcc`: stamp a transport-wide sequence number (see `Consumer::confirmed`).
    pub(super) fn new(now: Instant, t: &mut Transport, mid: Option<&str>, twcc: bool) -> OutExtensions {
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

    pub(super) fn push(&mut self, id: u8, bytes: &[u8]) {
        if self.used + bytes.len() <= self.buf.len() && self.n < self.ranges.len() {
            self.buf[self.used..self.used + bytes.len()].copy_from_slice(bytes);
            self.ranges[self.n] = (id, self.used..self.used + bytes.len());
            self.n += 1;
            self.used += bytes.len();
        }
    }

    pub(super) fn list(&self) -> [(u8, &[u8]); 5] {
        std::array::from_fn(|i| (self.ranges[i].0, &self.buf[self.ranges[i].1.clone()]))
    }
}

/// Writes one outgoing RTP packet for a consumer straight into the send buffer and encrypts it
/// there.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_forward(
    now: Instant,
    t: &mut Transport,
    c: &Consumer,
    original: &[u8],
    header: &rtp::RtpHeader,
    fwd: &Outgoing<'_>,
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
        marker: fwd.marker,
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
pub(super) fn write_padding(
    now: Instant,
    t: &mut Transport,
    c: &mut Consumer,
    out: &mut dyn Transmit,
) -> Option<usize> {
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
pub(super) fn abs_send_time(now: Instant) -> [u8; 3] {
    // Only differences matter to the receiver, so any fixed origin works.
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(|| now);
    let d = now.saturating_duration_since(origin);
    let v = ((d.as_nanos() << 18) / 1_000_000_000) as u32 & 0x00ff_ffff;
    let b = v.to_be_bytes();
    [b[1], b[2], b[3]]
}
