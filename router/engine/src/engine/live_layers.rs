//! Which simulcast layers are live (`crate::liveness`), as the engine uses it: what a layer
//! costs the allocation and the uplink cap, re-judging the layers every tick, and the gauge of
//! tracks by live layers. A child module of the engine, so it reads its private entities.

use std::time::Instant;

use schema::ids::ProducerId;
use schema::layers::MAX_LAYERS;
use tracing::{debug, info};

use super::{Engine, Producer};

impl Producer {
    /// What layer `i` costs a subscriber now, or `None` when it cannot be given: the producer
    /// is paused, the layer carries no packets, or (simulcast) it carries no frames, only
    /// padding (`liveness`). A plain track is judged by packets alone: a static screenshare may
    /// send no frame for seconds and is still what its subscribers watch.
    pub(super) fn layer_bps(&mut self, i: usize, now: Instant) -> Option<u64> {
        if self.params.paused {
            return None;
        }
        let simulcast = self.layers.len() > 1;
        let l = self.layers.get_mut(i)?;
        if simulcast && !l.liveness.is_live() {
            return None;
        }
        l.rate.rate_bps(now)
    }

    /// The names of the layers now live (rids, or indices for SSRC simulcast), for logs.
    fn live_layer_names(&self) -> String {
        let names: Vec<String> = self
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.liveness.is_live())
            .map(|(i, l)| l.rid.clone().unwrap_or_else(|| i.to_string()))
            .collect();
        if names.is_empty() { "none".into() } else { names.join(",") }
    }
}

impl Engine {
    /// Simulcast tracks by how many of their layers are live (index = live layers): a track
    /// at 1 of 3 is a publisher that encodes only its lowest layer.
    pub fn simulcast_tracks_by_live_layers(&self) -> [u64; MAX_LAYERS + 1] {
        let mut by = [0u64; MAX_LAYERS + 1];
        for p in self.producers.values().filter(|p| p.layers.len() > 1) {
            let live = p.layers.iter().filter(|l| l.liveness.is_live()).count();
            by[live.min(MAX_LAYERS)] += 1;
        }
        by
    }

    /// Re-judges which of a simulcast producer's layers are live; on a change, logs it, counts
    /// it, and has every subscriber of the producer reallocated at the next tick instead of
    /// within [`super::ALLOCATION_INTERVAL`], so a stopped layer's subscribers are moved at once.
    pub(super) fn judge_layers(&mut self, now: Instant, pid: ProducerId) {
        let Engine { producers, consumers, transports, counters, .. } = self;
        let Some(p) = producers.get_mut(&pid) else { return };
        let mut changed = false;
        for (i, l) in p.layers.iter_mut().enumerate() {
            let Some(live) = l.liveness.poll_change(now) else { continue };
            changed = true;
            let layer = l.rid.clone().unwrap_or_else(|| i.to_string());
            if live {
                counters.simulcast_layers_started += 1;
                info!(producer = %pid, layer, "simulcast layer live: frames arrive");
            } else {
                counters.simulcast_layers_stopped += 1;
                let since_ms = l.liveness.since_last_frame(now).map(|d| d.as_millis());
                info!(producer = %pid, layer, since_ms, "simulcast layer stopped: no new frame (padding or nothing)");
            }
        }
        if !changed {
            return;
        }
        debug!(producer = %pid, live = %p.live_layer_names(), "simulcast layers live");
        for c in p.consumers.iter().filter_map(|c| consumers.get(c)) {
            if let Some(t) = transports.get_mut(&c.transport) {
                t.downlink.next_allocation = now;
            }
        }
    }
}
