//! handle_timeout's periodic work per transport and per producer.

use std::time::{Duration, Instant};

use schema::api::{AudioLevel, Event, MediaKind};
use schema::ids::{ProducerId, TransportId};
use schema::layers::MAX_LAYERS;
use tracing::{debug, info};

use super::feedback::{send_rtcp, write_reports};
use super::{AUDIO_LEVEL_INTERVAL, Engine, Transmit};
use crate::rtcp;
use crate::uplink::{self, ProducerUplink};

/// How often a publisher transport's cap is recomputed (`uplink`).
const UPLINK_CHECK_INTERVAL: Duration = Duration::from_millis(250);

impl Engine {
    pub(super) fn transport_timers(&mut self, now: Instant, id: TransportId, out: &mut dyn Transmit) {
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
    pub(super) fn cap_uplink(&mut self, now: Instant, id: TransportId, out: &mut dyn Transmit) {
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

    pub(super) fn producer_timers(&mut self, now: Instant, pid: ProducerId, out: &mut dyn Transmit) {
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
        if !p.taps.is_empty() {
            needed.iter_mut().for_each(|n| *n = true);
            for tap in &mut p.taps {
                if p.got_first_packet && std::mem::take(&mut tap.wants_keyframe) {
                    keyframes.iter_mut().for_each(|k| *k = true);
                }
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

    /// Reports who speaks how loud, every [`AUDIO_LEVEL_INTERVAL`]; one empty report follows
    /// the last non-empty one so the SDK clears its speaker.
    pub(super) fn report_audio_levels(&mut self, now: Instant) {
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
    }

    /// Emits [`Event::Stats`] for every producer and consumer every `stats_interval`.
    pub(super) fn report_stats(&mut self, now: Instant) {
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
}
