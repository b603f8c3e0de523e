//! A subscriber's bandwidth: the retransmission budget, probing, and sharing the estimate among its consumers.

use std::time::{Duration, Instant};

use schema::api::MediaKind;
use schema::ids::{ConsumerId, TransportId};
use schema::layers::MAX_LAYERS;
use tracing::{debug, trace};

use super::forward::write_padding;
use super::objects::Downlink;
use super::{Engine, Transmit};
use crate::allocation::LayerDemand;
use crate::bwe::BweConfig;

/// How often each subscriber's bandwidth is shared out again among its video consumers.
const ALLOCATION_INTERVAL: Duration = Duration::from_millis(100);

/// A video consumer is paused by the allocation only when the measured estimate has left it
/// less than half its lowest layer for this long; short of that it is degraded to the lowest
/// layer. A pause keeps audio alive on a link too thin for video, but a frozen tile is worse
/// than a blurry one, and right after a join the estimate is not worth one.
pub(super) const PAUSE_STARVED_AFTER: Duration = Duration::from_secs(2);

/// How long a switch waits for the target layer's keyframe (asking with PLIs) before giving
/// up and staying on the current layer; the layer is then not tried again for
/// [`LAYER_RETRY_AFTER`].
const SWITCH_TIMEOUT: Duration = Duration::from_secs(4);
const LAYER_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The share of a subscriber's estimate retransmissions may use.
const RTX_SHARE: f64 = 0.15;

impl Engine {
    /// Sends the padding the transport's estimator asks for, to learn whether the subscriber's
    /// link carries more than it is sent now. Padding goes on a video consumer's RTX stream
    /// (receivers discard it after counting it in their feedback); without one there is no
    /// way to probe.
    pub(super) fn send_probes(&mut self, now: Instant, id: TransportId, out: &mut dyn Transmit) {
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
    pub(super) fn allocate_downlink(&mut self, now: Instant, id: TransportId) {
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
}

impl Downlink {
    /// Takes `bytes` of retransmission budget, or says no. Unlimited while the estimate is
    /// not measured.
    pub(super) fn take_rtx_budget(&mut self, now: Instant, bytes: usize) -> bool {
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

    /// Whether the estimate rests on evidence: an overuse, a decrease for loss, a probe that
    /// got through, or the subscriber's REMB. Until then it is the initial guess, and holding a
    /// subscriber's video back on a guess would be wrong (a clean link shows no congestion at
    /// all); probing makes it measured soon enough whenever more is wanted.
    pub(super) fn measured(&self) -> bool {
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
