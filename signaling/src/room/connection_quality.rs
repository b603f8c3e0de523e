//! Connection quality (100ms's `on-connection-quality-update {peers: [{peer_id,
//! downlink_score}]}`): every [`QUALITY_EVERY`], each joined SDK peer's downlink scored from
//! the router's view of its subscribe connection (`transport_link_stats`: the bandwidth
//! estimate, the loss and the round trip its congestion feedback shows), pushed to every
//! joined peer, which shows it on the peer's tile.
//!
//! The score is 100ms's scale: -1 unknown (no feedback yet), 0 disconnected (its socket is
//! gone and it may come back), 1 (bad) to 5 (excellent), the worst of three:
//!
//! | score | loss | round trip | estimate |
//! | --- | --- | --- | --- |
//! | 5 | < 2 % | < 150 ms | ≥ 500 kbit/s |
//! | 4 | < 5 % | < 300 ms | ≥ 250 kbit/s |
//! | 3 | < 10 % | < 500 ms | ≥ 120 kbit/s |
//! | 2 | < 20 % | < 1 s | ≥ 60 kbit/s |
//! | 1 | more | more | less |

use std::time::{Duration, Instant};

use schema::api::LinkStats;
use serde_json::json;

use super::Room;
use super::peer::Via;

/// How often the scores are pushed.
pub(super) const QUALITY_EVERY: Duration = Duration::from_secs(3);

/// A link's score, 1 to 5, or -1 before any feedback.
pub(super) fn downlink_score(s: &LinkStats) -> i8 {
    let Some(estimate) = s.estimate_bps.filter(|_| s.feedbacks > 0) else { return -1 };
    let grade = |value: f64, bounds: [f64; 4], higher_is_better: bool| -> i8 {
        let passed = bounds.iter().filter(|&&b| if higher_is_better { value >= b } else { value < b }).count();
        1 + passed as i8
    };
    let loss = grade(s.loss_fraction, [0.20, 0.10, 0.05, 0.02], false);
    let rtt = s.rtt_ms.map_or(5, |ms| grade(ms as f64, [1000.0, 500.0, 300.0, 150.0], false));
    let bwe = grade(estimate as f64, [60_000.0, 120_000.0, 250_000.0, 500_000.0], true);
    loss.min(rtt).min(bwe)
}

impl Room {
    /// Scores every joined SDK peer's downlink and tells everyone, at most every
    /// [`QUALITY_EVERY`].
    pub(super) async fn refresh_connection_quality(&mut self, now: Instant) {
        if self.quality_at.is_some_and(|at| now.duration_since(at) < QUALITY_EVERY) {
            return;
        }
        self.quality_at = Some(now);
        let peers: Vec<(String, Option<schema::ids::TransportId>, bool)> = self
            .peers
            .values()
            .filter(|p| p.joined && p.via == Via::Sdk)
            .map(|p| (p.id.clone(), p.subscribe.as_ref().map(|s| s.transport.id), p.out.is_none()))
            .collect();
        if peers.is_empty() {
            return;
        }
        let mut scores = Vec::with_capacity(peers.len());
        for (peer_id, transport, away) in peers {
            let score = match (away, transport) {
                (true, _) => 0,
                (false, None) => -1,
                (false, Some(t)) => self.env.router.transport_link_stats(t).await.map_or(-1, |s| downlink_score(&s)),
            };
            scores.push(json!({ "peer_id": peer_id, "downlink_score": score }));
        }
        self.push_all("on-connection-quality-update", &json!({ "peers": scores }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(estimate: u64, loss: f64, rtt: u64) -> LinkStats {
        LinkStats { estimate_bps: Some(estimate), loss_fraction: loss, rtt_ms: Some(rtt), feedbacks: 10 }
    }

    #[test]
    fn the_worst_of_loss_round_trip_and_estimate_sets_the_score() {
        assert_eq!(downlink_score(&LinkStats::default()), -1, "no feedback yet");
        assert_eq!(downlink_score(&link(2_000_000, 0.0, 30)), 5);
        assert_eq!(downlink_score(&link(2_000_000, 0.03, 30)), 4);
        assert_eq!(downlink_score(&link(2_000_000, 0.0, 400)), 3);
        assert_eq!(downlink_score(&link(100_000, 0.0, 30)), 2);
        assert_eq!(downlink_score(&link(2_000_000, 0.5, 30)), 1);
        assert_eq!(downlink_score(&link(2_000_000, 0.0, 5_000)), 1);
    }
}
