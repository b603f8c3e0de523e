//! Simulcast forwarding: which layer a consumer gets, when it may switch, and how the switched
//! stream is made to look like one continuous stream. Pure functions; the engine calls them on
//! every packet (see `docs/simulcast.md`).
//!
//! A simulcast producer has up to `schema::layers::MAX_LAYERS` spatial layers, index 0 the lowest (rid `q`),
//! each its own RTP stream (own SSRC, sequence numbers and timestamps). A video consumer keeps
//! three layers, as in mediasoup's SimulcastConsumer and LiveKit's Forwarder:
//! - `preferred`: the highest layer the subscriber asked for (`prefer-video-track-state`),
//! - `target`: what the bandwidth allocation grants (never above `preferred`),
//! - `current`: what is forwarded now.
//!
//! [`decide`] looks at one packet and says drop, forward, or switch `current` to `target` here.
//! A switch only happens on the first packet of a keyframe of the target layer, since the
//! subscriber's decoder cannot start a new stream anywhere else; until that keyframe comes the
//! consumer keeps forwarding its current layer, and the engine asks the publisher for one.
//!
//! ```
//! use router_engine::simulcast::{decide, LayerDecision, LayerState};
//! let s = LayerState { preferred: Some(2), target: Some(2), current: Some(0) };
//! assert_eq!(decide(&s, 0, false), LayerDecision::Forward); // keep the old layer meanwhile
//! assert_eq!(decide(&s, 2, false), LayerDecision::Drop); // not a keyframe: cannot switch yet
//! assert_eq!(decide(&s, 2, true), LayerDecision::Switch { from: Some(0), to: 2 });
//! ```

/// The layers of one video consumer. `None` means no layer (nothing forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerState {
    pub preferred: Option<u8>,
    pub target: Option<u8>,
    pub current: Option<u8>,
}

/// What to do with one packet of a producer's layer, for one consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerDecision {
    /// Not for this consumer (another layer, or a layer it is leaving or cannot enter yet).
    Drop,
    /// The consumer's current layer: forward with the current numbering.
    Forward,
    /// The first packet of a keyframe of the target layer: `current` becomes `to`, the
    /// numbering continues from the last packet sent, and this packet is forwarded.
    Switch { from: Option<u8>, to: u8 },
}

/// The decision for a packet of `layer`; `keyframe_start` is true for the first packet of a
/// keyframe (the only place a decoder can join a stream).
pub fn decide(state: &LayerState, layer: u8, keyframe_start: bool) -> LayerDecision {
    match state.target {
        // Paused by the allocation or the subscriber: nothing, whatever the layer.
        None => LayerDecision::Drop,
        Some(target) if state.current == Some(target) => {
            if layer == target {
                LayerDecision::Forward
            } else {
                LayerDecision::Drop
            }
        }
        Some(target) => {
            if layer == target && keyframe_start {
                LayerDecision::Switch { from: state.current, to: target }
            } else if state.current == Some(layer) {
                LayerDecision::Forward
            } else {
                LayerDecision::Drop
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every case of the decision: (preferred, target, current), packet layer, keyframe start,
    /// and the expected decision.
    #[test]
    fn decision_table() {
        use LayerDecision::*;
        let s = |t: Option<u8>, c: Option<u8>| LayerState { preferred: Some(2), target: t, current: c };
        #[rustfmt::skip]
        let table: &[(LayerState, u8, bool, LayerDecision)] = &[
            // Steady on a layer: its packets pass, the others do not.
            (s(Some(1), Some(1)), 1, false, Forward),
            (s(Some(1), Some(1)), 1, true, Forward),
            (s(Some(1), Some(1)), 0, true, Drop),
            (s(Some(1), Some(1)), 2, true, Drop),
            // Upgrade pending: keep the current layer until the target's keyframe.
            (s(Some(2), Some(0)), 0, false, Forward),
            (s(Some(2), Some(0)), 2, false, Drop),
            (s(Some(2), Some(0)), 2, true, Switch { from: Some(0), to: 2 }),
            // A keyframe of a layer between current and target is not the target: no switch.
            (s(Some(2), Some(0)), 1, true, Drop),
            // Downgrade pending: same rule.
            (s(Some(0), Some(2)), 2, false, Forward),
            (s(Some(0), Some(2)), 0, false, Drop),
            (s(Some(0), Some(2)), 0, true, Switch { from: Some(2), to: 0 }),
            // Starting: nothing until the target's keyframe.
            (s(Some(1), None), 1, false, Drop),
            (s(Some(1), None), 0, true, Drop),
            (s(Some(1), None), 1, true, Switch { from: None, to: 1 }),
            // Paused: nothing at all.
            (s(None, Some(1)), 1, true, Drop),
            (s(None, None), 0, true, Drop),
        ];
        for (i, (state, layer, key, want)) in table.iter().enumerate() {
            assert_eq!(decide(state, *layer, *key), *want, "row {i}: {state:?} layer {layer} key {key}");
        }
    }
}
