//! Datagram input: STUN to ICE, DTLS records, SRTP unprotect, and RTP to its producer layer.

use std::net::SocketAddr;
use std::time::Instant;

use schema::api::{CloseReason, Event, MediaKind};
use schema::ids::{ProducerId, TransportId};
use tracing::{debug, trace};

use super::objects::{Producer, StreamRef, Transport};
use super::{Engine, Transmit};
use crate::dtls::{DtlsFailure, DtlsOutput};
use crate::ice::IceEvent;
use crate::ids::FastMap;
use crate::{rtp, stun};

impl Engine {
    pub(super) fn handle_stun(&mut self, now: Instant, src: SocketAddr, buf: &[u8], out: &mut dyn Transmit) {
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

    pub(super) fn drain_ice_events(&mut self, id: TransportId) {
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

    pub(super) fn handle_dtls(&mut self, now: Instant, src: SocketAddr, buf: &[u8], out: &mut dyn Transmit) {
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

    pub(super) fn on_dtls_output(&mut self, id: TransportId, output: DtlsOutput) {
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

    pub(super) fn handle_srtp(&mut self, now: Instant, src: SocketAddr, buf: &mut [u8], out: &mut dyn Transmit) {
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

    pub(super) fn handle_rtp(&mut self, now: Instant, tid: TransportId, buf: &mut [u8], out: &mut dyn Transmit) {
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
}

/// Why an unknown SSRC could not be bound to a producer.
pub(super) enum Unbound {
    /// No producer's mid, or no extensions to tell.
    Unknown,
    /// The mid names a producer, but none of its layers has this rid.
    UnknownRid,
}

/// Binds an unknown SSRC to the producer whose mid its header extensions name, and to the
/// layer its rid (or, for RTX, repaired rid) names.
pub(super) fn bind_ssrc_by_mid(
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
