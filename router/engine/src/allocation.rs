//! Sharing one subscriber's bandwidth estimate among its video consumers.
//!
//! Each consumer is a subscribed simulcast video track: it says how important it is
//! ([`LayerDemand::priority`]), what each spatial layer of its producer currently costs
//! ([`LayerDemand::layer_bps`], `None` when the layer is not flowing) and the highest layer the
//! subscriber wants ([`LayerDemand::max_layer`]). [`Allocator::allocate`] turns the budget (the
//! subscriber's bandwidth estimate, after audio and overhead) into a target layer per consumer.
//! It is a pure function of its inputs plus the previous decision per consumer, which it keeps
//! for hysteresis; time is an argument.
//!
//! # Two phases (LiveKit's StreamAllocator idea)
//! 1. *Provisional*: in priority order (highest first; equal priorities in input order), each
//!    consumer gets its lowest flowing layer while the budget allows. One that cannot even get
//!    that is paused; because the walk goes from the highest priority down, the lowest
//!    priorities are the ones that run out. A lower-priority consumer with a cheaper lowest
//!    layer can still fit after a higher one did not: leaving budget unused helps no one.
//! 2. *Commit*: in priority order again, each consumer is upgraded as far as the remaining
//!    budget allows, up to the best flowing layer at or below its `max_layer` (see below).
//!
//! Everyone first gets something to watch, and only then do the important streams get sharp;
//! a single greedy pass would give the screenshare its top layer and pause every camera.
//!
//! # Hysteresis
//! A layer switch costs a keyframe and a visible change, so the allocation must not follow
//! every wobble of the estimate:
//! - Raising a consumer above its previous layer (or resuming a paused one) needs the new
//!   layer's bitrate plus [`UPGRADE_MARGIN_PERCENT`] (12 %) to fit. An estimate that oscillates
//!   by ±5 % around a layer's cost therefore never upgrades, and layer bitrates themselves
//!   wander by a few percent between measurements.
//! - A consumer lowered because the budget could not hold it is not raised again for
//!   [`RAISE_HOLD`] (2.5 s): long enough for the estimator to settle after a congestion event
//!   (a probe, or a few AIMD steps), short enough that recovery is not sluggish.
//! - Keeping (or returning to) the previous layer needs no margin, and lowering happens at
//!   once when the budget cannot hold the current allocation: congestion is urgent, an
//!   upgrade is not. Lowering because the subscriber asked for less, or because a layer
//!   stopped flowing, starts no hold.
//!
//! A layer whose bitrate is unknown (`None`) is never chosen; when `max_layer`'s layer is not
//! flowing, the best flowing layer below it is the goal, and when none below is flowing, the
//! lowest flowing one above it (a sharper picture beats none).
//!
//! ```
//! use std::time::Instant;
//! use router_engine::allocation::{Allocation, Allocator, LayerDemand};
//! let mut alloc = Allocator::new();
//! let cam = |key, priority| LayerDemand {
//!     key,
//!     priority,
//!     layer_bps: [Some(150_000), Some(500_000), Some(1_500_000)],
//!     max_layer: Some(2),
//! };
//! let got = alloc.allocate(Instant::now(), 1_000_000, &[cam(1, 0), cam(2, 2)]);
//! // Both get the low layer first; the speaker (priority 2) is upgraded with what is left.
//! assert_eq!(got[0], Allocation { key: 1, target: Some(0), degraded: true });
//! assert_eq!(got[1], Allocation { key: 2, target: Some(1), degraded: true });
//! ```

use std::cmp::Reverse;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Extra budget, over the layer's own bitrate, needed to raise a consumer above its previous
/// layer.
pub const UPGRADE_MARGIN_PERCENT: u64 = 12;
/// A consumer lowered for lack of budget is not raised again for this long.
pub const RAISE_HOLD: Duration = Duration::from_millis(2500);
/// Spatial layers per producer (q, h, f).
pub const LAYERS: usize = 3;

/// What one consumer (a subscribed video track) would like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerDemand {
    /// The caller's id for the consumer; decisions are remembered by it.
    pub key: u32,
    /// Higher is served first (screenshare 3, active speaker 2, then the publisher's role
    /// priority mapped into 0..=1).
    pub priority: u8,
    /// Measured bitrate of each spatial layer (0 = low q, 1 = medium h, 2 = high f); `None`
    /// when the layer is not flowing (never started, or paused).
    pub layer_bps: [Option<u64>; LAYERS],
    /// The highest layer the subscriber wants (preferred, capped by the role); `None` = wants
    /// nothing (paused). Values above 2 mean 2.
    pub max_layer: Option<u8>,
}

/// The decision for one consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub key: u32,
    /// Layer to forward; `None` = pause.
    pub target: Option<u8>,
    /// The target is below the best flowing layer the subscriber wants (budget or
    /// hysteresis held it back).
    pub degraded: bool,
}

#[derive(Debug, Clone, Copy)]
struct Previous {
    target: Option<u8>,
    /// When the budget last forced this consumer down; cleared when it is raised.
    lowered_at: Option<Instant>,
}

/// Shares a budget among consumers, remembering the previous decisions for hysteresis.
#[derive(Debug, Default)]
pub struct Allocator {
    previous: HashMap<u32, Previous>,
}

impl Allocator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns, per demand (same order), the target layer (`None` = pause) and whether it is
    /// below what was wanted. Consumers not in `demands` are forgotten. Keys should be unique;
    /// duplicates share one remembered decision (the last one wins).
    pub fn allocate(&mut self, now: Instant, budget_bps: u64, demands: &[LayerDemand]) -> Vec<Allocation> {
        let wanted: Vec<Option<u8>> = demands.iter().map(best_wanted_layer).collect();
        let mut order: Vec<usize> = (0..demands.len()).collect();
        order.sort_by_key(|&i| Reverse(demands[i].priority)); // stable: ties keep input order
        let mut target: Vec<Option<u8>> = vec![None; demands.len()];
        let mut remaining = budget_bps;

        // Phase 1: everyone's lowest flowing layer, while it lasts.
        for &i in &order {
            let d = &demands[i];
            let Some(w) = wanted[i] else { continue };
            let Some((layer, cost)) = (0..=w).find_map(|l| layer_cost(d, l).map(|c| (l, c))) else { continue };
            // `may_take` only says yes when `cost <= remaining`: the subtractions cannot wrap.
            if self.may_take(now, d.key, layer, cost, remaining) {
                target[i] = Some(layer);
                remaining -= cost;
            }
        }

        // Phase 2: upgrade in priority order with what is left.
        for &i in &order {
            let d = &demands[i];
            let (Some(current), Some(w)) = (target[i], wanted[i]) else { continue };
            // `current` was paid for in phase 1, so it is a flowing layer with a cost.
            let current_cost = layer_cost(d, current).unwrap_or(0);
            let available = remaining + current_cost;
            let better = (current + 1..=w)
                .rev()
                .find_map(|l| layer_cost(d, l).filter(|&c| self.may_take(now, d.key, l, c, available)).map(|c| (l, c)));
            if let Some((layer, cost)) = better {
                target[i] = Some(layer);
                remaining = available - cost;
            }
        }

        let mut next = HashMap::with_capacity(demands.len());
        let out = demands
            .iter()
            .zip(target.iter().zip(&wanted))
            .map(|(d, (&t, &w))| {
                let prev = self.previous.get(&d.key).copied();
                let prev_target = prev.and_then(|p| p.target);
                let lowered_by_budget = prev.is_some() && t < prev_target && t < w;
                let lowered_at = if lowered_by_budget {
                    Some(now)
                } else if prev.is_some() && t > prev_target {
                    None
                } else {
                    prev.and_then(|p| p.lowered_at)
                };
                next.insert(d.key, Previous { target: t, lowered_at });
                Allocation { key: d.key, target: t, degraded: t < w }
            })
            .collect();
        self.previous = next;
        out
    }

    /// Whether `layer` (costing `cost`) may be given to `key` out of `available`.
    fn may_take(&self, now: Instant, key: u32, layer: u8, cost: u64, available: u64) -> bool {
        let prev = self.previous.get(&key);
        let raise = prev.is_none_or(|p| p.target.is_none_or(|t| layer > t));
        if !raise {
            return cost <= available;
        }
        if prev.and_then(|p| p.lowered_at).is_some_and(|t| now.saturating_duration_since(t) < RAISE_HOLD) {
            return false;
        }
        u128::from(cost) * u128::from(100 + UPGRADE_MARGIN_PERCENT) <= u128::from(available) * 100
    }
}

/// What the consumers would cost with no budget limit: the sum of each one's best flowing
/// layer at or below its `max_layer`. This is the rate to give the bandwidth estimator as
/// desired ([`crate::bwe::BandwidthEstimator::set_desired_bps`]), so it probes only when the
/// allocation is actually held back.
pub fn desired_bps(demands: &[LayerDemand]) -> u64 {
    demands.iter().filter_map(|d| best_wanted_layer(d).and_then(|l| layer_cost(d, l))).fold(0, u64::saturating_add)
}

fn layer_cost(d: &LayerDemand, layer: u8) -> Option<u64> {
    d.layer_bps.get(usize::from(layer)).copied().flatten()
}

/// The best flowing layer at or below `max_layer`, else the lowest flowing one above it: the
/// consumer's goal with no budget limit.
pub fn best_wanted_layer(d: &LayerDemand) -> Option<u8> {
    crate::liveness::best_available(d.max_layer?, LAYERS as u8, |l| layer_cost(d, l).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAM: [Option<u64>; LAYERS] = [Some(150_000), Some(500_000), Some(1_500_000)];

    fn demand(key: u32, priority: u8, layer_bps: [Option<u64>; LAYERS], max_layer: Option<u8>) -> LayerDemand {
        LayerDemand { key, priority, layer_bps, max_layer }
    }

    fn cam(key: u32, priority: u8) -> LayerDemand {
        demand(key, priority, CAM, Some(2))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn targets(got: &[Allocation]) -> Vec<(Option<u8>, bool)> {
        got.iter().map(|a| (a.target, a.degraded)).collect()
    }

    #[test]
    fn fresh_allocations() {
        // (name, budget, demands, per demand: (target, degraded))
        type Case = (&'static str, u64, Vec<LayerDemand>, Vec<(Option<u8>, bool)>);
        let screenshare = demand(9, 3, [Some(600_000), None, Some(2_000_000)], Some(2));
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("empty input", 1_000_000, vec![], vec![]),
            ("everything fits", 10_000_000, vec![cam(1, 0), cam(2, 0)], vec![(Some(2), false), (Some(2), false)]),
            // Both get q (300k), then the speaker takes h out of the remaining 700k.
            ("priority order: the speaker is upgraded first", 1_000_000, vec![cam(1, 0), cam(2, 2)],
                vec![(Some(0), true), (Some(1), true)]),
            ("equal priority: input order", 1_000_000, vec![cam(1, 1), cam(2, 1)],
                vec![(Some(1), true), (Some(0), true)]),
            // q for all and the screenshare's 600k (900k), f for it (+1.4M): 400k left, short
            // of h plus the margin for the speaker.
            ("the screenshare takes f before cameras get h", 2_600_000,
                vec![cam(1, 0), screenshare, cam(2, 2)], vec![(Some(0), true), (Some(2), false), (Some(0), true)]),
            ("starved: the lowest priorities are paused first", 200_000, vec![cam(1, 0), cam(2, 2), cam(3, 1)],
                vec![(None, true), (Some(0), true), (None, true)]),
            ("a starved high priority does not block a cheap low one", 400_000, vec![screenshare, cam(2, 0)],
                vec![(None, true), (Some(0), true)]),
            ("max_layer caps", 10_000_000, vec![demand(1, 0, CAM, Some(1))], vec![(Some(1), false)]),
            ("max_layer 0", 10_000_000, vec![demand(1, 0, CAM, Some(0))], vec![(Some(0), false)]),
            ("max_layer above 2 means 2", 10_000_000, vec![demand(1, 0, CAM, Some(7))], vec![(Some(2), false)]),
            ("wants nothing: paused, not degraded", 10_000_000, vec![demand(1, 0, CAM, None)], vec![(None, false)]),
            ("a missing low layer is skipped", 10_000_000,
                vec![demand(1, 0, [None, Some(500_000), Some(1_500_000)], Some(2))], vec![(Some(2), false)]),
            ("a missing middle layer is never chosen", 1_000_000,
                vec![demand(1, 0, [Some(150_000), None, Some(1_500_000)], Some(2))], vec![(Some(0), true)]),
            ("max_layer's layer not flowing: the best below", 10_000_000,
                vec![demand(1, 0, [Some(150_000), Some(500_000), None], Some(2))], vec![(Some(1), false)]),
            ("nothing flowing", 10_000_000, vec![demand(1, 0, [None; LAYERS], Some(2))], vec![(None, false)]),
            ("nothing flowing at or below max_layer: the lowest above", 10_000_000,
                vec![demand(1, 0, [None, Some(500_000), Some(1_500_000)], Some(0))], vec![(Some(1), false)]),
            ("the lowest above, short of budget: degraded below it is impossible, paused", 400_000,
                vec![demand(1, 0, [None, Some(500_000), Some(1_500_000)], Some(0))], vec![(None, true)]),
            ("starting needs the margin too", 160_000, vec![cam(1, 0)], vec![(None, true)]),
            ("just enough with the margin", 168_000, vec![cam(1, 0)], vec![(Some(0), true)]),
            ("zero budget", 0, vec![cam(1, 0)], vec![(None, true)]),
            ("free layers fit a zero budget", 0, vec![demand(1, 0, [Some(0), None, None], Some(2))],
                vec![(Some(0), false)]),
        ];
        let now = Instant::now();
        for (name, budget, demands, want) in cases {
            let got = Allocator::new().allocate(now, budget, &demands);
            assert_eq!(
                got.iter().map(|a| a.key).collect::<Vec<_>>(),
                demands.iter().map(|d| d.key).collect::<Vec<_>>()
            );
            assert_eq!(targets(&got), want, "{name}");
            let spent: u64 =
                got.iter().zip(&demands).filter_map(|(a, d)| a.target.and_then(|t| d.layer_bps[usize::from(t)])).sum();
            assert!(spent <= budget, "{name}: spent {spent} of {budget}");
        }
    }

    /// Runs `budgets` (one call per 100 ms) and counts target changes per consumer.
    fn changes(alloc: &mut Allocator, start: Instant, budgets: &[u64], demands: &[LayerDemand]) -> Vec<usize> {
        let mut last: Option<Vec<Option<u8>>> = None;
        let mut count = vec![0; demands.len()];
        for (i, &b) in budgets.iter().enumerate() {
            let got: Vec<_> = alloc.allocate(start + ms(100 * i as u64), b, demands).iter().map(|a| a.target).collect();
            if let Some(prev) = &last {
                for (c, (p, g)) in count.iter_mut().zip(prev.iter().zip(&got)) {
                    *c += usize::from(p != g);
                }
            }
            last = Some(got);
        }
        count
    }

    #[test]
    fn a_budget_wobbling_around_a_layer_does_not_flap() {
        let t0 = Instant::now();
        let one = [cam(1, 0)];
        // ±5 % around f's 1.5 Mbit/s, for 30 s.
        let wobble: Vec<u64> = (0..300).map(|i| if i % 2 == 0 { 1_425_000 } else { 1_575_000 }).collect();

        // Sitting on h: the high swings never reach f plus the margin.
        let mut alloc = Allocator::new();
        assert_eq!(alloc.allocate(t0, 1_400_000, &one)[0].target, Some(1));
        assert_eq!(changes(&mut alloc, t0 + ms(100), &wobble, &one), vec![0]);

        // Sitting on f: the first low swing lowers it at once, then it stays on h.
        let mut alloc = Allocator::new();
        assert_eq!(alloc.allocate(t0, 2_000_000, &one)[0].target, Some(2));
        assert_eq!(alloc.allocate(t0 + ms(100), 1_425_000, &one)[0].target, Some(1), "lowered at once");
        assert_eq!(changes(&mut alloc, t0 + ms(200), &wobble, &one), vec![0]);
    }

    #[test]
    fn several_consumers_wobbling_do_not_flap() {
        let t0 = Instant::now();
        let three = [cam(1, 0), cam(2, 2), cam(3, 1)];
        // At 2.3 Mbit/s: q for all (450k), f for the speaker (+1.35M), h for the next (+350k),
        // 2.15M in all. ±5 % neither drops anyone (2.185M holds 2.15M) nor lifts the last one
        // to h (that needs 2.56M with the margin).
        let mut alloc = Allocator::new();
        let settled = targets(&alloc.allocate(t0, 2_300_000, &three));
        assert_eq!(settled, vec![(Some(0), true), (Some(2), false), (Some(1), true)]);
        let wobble: Vec<u64> = (0..300).map(|i| if i % 2 == 0 { 2_185_000 } else { 2_415_000 }).collect();
        assert_eq!(changes(&mut alloc, t0 + ms(100), &wobble, &three), vec![0, 0, 0]);
    }

    #[test]
    fn a_lowered_consumer_is_restored_after_the_hold() {
        let t0 = Instant::now();
        let one = [cam(1, 0)];
        let mut alloc = Allocator::new();
        assert_eq!(alloc.allocate(t0, 2_000_000, &one)[0].target, Some(2));
        // Congestion: lowered at once, and to the layer that fits.
        let down = t0 + ms(1000);
        assert_eq!(alloc.allocate(down, 400_000, &one)[0], Allocation { key: 1, target: Some(0), degraded: true });
        // The budget comes back at once, but the consumer waits out the hold ...
        for t in [ms(100), ms(1000), ms(2400)] {
            assert_eq!(alloc.allocate(down + t, 2_000_000, &one)[0].target, Some(0), "at {t:?}");
        }
        // ... and is then raised straight to the top.
        assert_eq!(alloc.allocate(down + RAISE_HOLD, 2_000_000, &one)[0].target, Some(2));
        assert!(!alloc.allocate(down + RAISE_HOLD, 2_000_000, &one)[0].degraded);

        // A second lowering during a hold restarts it.
        let mut alloc = Allocator::new();
        alloc.allocate(t0, 2_000_000, &one);
        alloc.allocate(t0 + ms(100), 1_000_000, &one); // f -> h
        alloc.allocate(t0 + ms(2000), 400_000, &one); // h -> q
        assert_eq!(alloc.allocate(t0 + ms(2700), 2_000_000, &one)[0].target, Some(0), "held from the second");
        assert_eq!(alloc.allocate(t0 + ms(4500), 2_000_000, &one)[0].target, Some(2));
    }

    #[test]
    fn a_paused_consumer_resumes_after_the_hold() {
        let t0 = Instant::now();
        let one = [cam(1, 0)];
        let mut alloc = Allocator::new();
        assert_eq!(alloc.allocate(t0, 1_000_000, &one)[0].target, Some(1));
        assert_eq!(alloc.allocate(t0 + ms(100), 100_000, &one)[0], Allocation { key: 1, target: None, degraded: true });
        assert_eq!(alloc.allocate(t0 + ms(1000), 1_000_000, &one)[0].target, None);
        assert_eq!(alloc.allocate(t0 + ms(100) + RAISE_HOLD, 1_000_000, &one)[0].target, Some(1));
    }

    #[test]
    fn lowering_by_request_or_by_a_layer_stopping_starts_no_hold() {
        let t0 = Instant::now();
        let mut alloc = Allocator::new();
        assert_eq!(alloc.allocate(t0, 5_000_000, &[cam(1, 0)])[0].target, Some(2));
        // The subscriber asks for q, then for f again: served at once.
        assert_eq!(alloc.allocate(t0 + ms(100), 5_000_000, &[demand(1, 0, CAM, Some(0))])[0].target, Some(0));
        assert_eq!(alloc.allocate(t0 + ms(200), 5_000_000, &[cam(1, 0)])[0].target, Some(2));
        // The publisher's f pauses, then resumes: back at once.
        let no_f = demand(1, 0, [Some(150_000), Some(500_000), None], Some(2));
        assert_eq!(
            alloc.allocate(t0 + ms(300), 5_000_000, &[no_f])[0],
            Allocation { key: 1, target: Some(1), degraded: false }
        );
        assert_eq!(alloc.allocate(t0 + ms(400), 5_000_000, &[cam(1, 0)])[0].target, Some(2));
    }

    #[test]
    fn returning_to_the_previous_layer_needs_no_margin() {
        let t0 = Instant::now();
        let mut alloc = Allocator::new();
        assert_eq!(alloc.allocate(t0, 2_000_000, &[cam(1, 0)])[0].target, Some(2));
        // Exactly f's cost: kept, although a fresh upgrade to f would need 1.68M.
        assert_eq!(alloc.allocate(t0 + ms(100), 1_500_000, &[cam(1, 0)])[0].target, Some(2));
        assert_eq!(Allocator::new().allocate(t0, 1_500_000, &[cam(1, 0)])[0].target, Some(1));
    }

    #[test]
    fn desired_is_the_sum_of_the_best_wanted_layers() {
        let demands = [
            cam(1, 0),                                          // f: 1.5M
            demand(2, 0, CAM, Some(1)),                         // h: 500k
            demand(3, 0, [Some(150_000), None, None], Some(2)), // only q flows: 150k
            demand(4, 0, CAM, None),                            // wants nothing
            demand(5, 0, [None; LAYERS], Some(2)),              // nothing flows
        ];
        assert_eq!(desired_bps(&demands), 2_150_000);
        assert_eq!(desired_bps(&[]), 0);
        assert_eq!(desired_bps(&[demand(1, 0, [Some(u64::MAX); LAYERS], Some(2)); 2]), u64::MAX);
    }

    #[test]
    fn removed_consumers_are_forgotten() {
        let t0 = Instant::now();
        let mut alloc = Allocator::new();
        let both = [cam(1, 0), cam(2, 0)];
        assert_eq!(targets(&alloc.allocate(t0, 4_000_000, &both)), vec![(Some(2), false); 2]);
        assert_eq!(targets(&alloc.allocate(t0 + ms(100), 400_000, &both)), vec![(Some(0), true); 2]); // both held
        alloc.allocate(t0 + ms(200), 5_000_000, &[cam(2, 0)]);
        assert_eq!(alloc.previous.len(), 1);
        // Consumer 1 comes back as a new subscription: no hold carried over.
        let got = alloc.allocate(t0 + ms(300), 5_000_000, &[cam(1, 0), cam(2, 0)]);
        assert_eq!(targets(&got), vec![(Some(2), false), (Some(0), true)]);
    }
}
