//! RTCP in (sender reports, PLI/FIR, NACK, TWCC, REMB) and out (PLI, reports), and NACK answers.

use std::time::Instant;

use schema::codec::Codec;
use schema::ids::{ConsumerId, ProducerId, TransportId};

use super::forward::{Outgoing, write_forward};
use super::objects::{Consumer, Producer, StreamRef, Transport};
use super::{Engine, Transmit};
use crate::codec::Vp8Descriptor;
use crate::ids::FastMap;
use crate::{rtcp, rtp};

impl Engine {
    pub(super) fn handle_rtcp(&mut self, now: Instant, tid: TransportId, buf: &[u8], out: &mut dyn Transmit) {
        // Feedback is resolved to consumers while parsing and acted on after, so the engine's
        // reusable scratch lists carry it across (no allocation per RTCP packet).
        let mut keyframes = std::mem::take(&mut self.rtcp_keyframes);
        let mut resends = std::mem::take(&mut self.rtcp_resends);
        keyframes.clear();
        resends.clear();
        {
            let Engine { transports, consumers, producers, counters, tap_sinks, .. } = &mut *self;
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
                            if let Some(p) = producers.get(&producer) {
                                tap_sinks.offer_each(&p.taps, counters, |tap| schema::tap::TapRecord::SenderReport {
                                    tap,
                                    producer: producer.0,
                                    layer,
                                    ntp: ntp_time,
                                    rtp_time,
                                });
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
    pub(super) fn retransmit(&mut self, now: Instant, cid: ConsumerId, out_seq: u16, out: &mut dyn Transmit) {
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
        let forward = Outgoing { seq: out_seq, ts: out_ts, marker: header.marker, rtx, vp8: vp8_out };
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
    pub(super) fn request_keyframe(
        &mut self,
        now: Instant,
        pid: ProducerId,
        layer: u8,
        for_switch: bool,
        out: &mut dyn Transmit,
    ) {
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
}

/// Protects an RTCP packet into the send buffer and commits it. Returns false if the
/// transport is not ready.
pub(super) fn send_rtcp(t: &mut Transport, plain: &[u8], out: &mut dyn Transmit) -> bool {
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
pub(super) fn write_reports(
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
