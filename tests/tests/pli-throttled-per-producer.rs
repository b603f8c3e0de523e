//! Subscribers asking for keyframes far more often than the throttle window: the publisher
//! sees at most one PLI per window, and still gets them.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use integration_tests::room::Room;
use integration_tests::sim::{Link, Sim};
use router_engine::EngineConfig;

#[test]
fn pli_reaches_publisher_at_most_once_per_window() {
    let cfg = EngineConfig { pli_throttle: Duration::from_millis(500), ..EngineConfig::default() };
    let mut sim = Sim::with_config(0x5eed_0003, cfg);
    let mut room = Room::setup(&mut sim, 3, (Link::default(), Link::default()), (Link::default(), Link::default()));
    // Let the subscribers start (their initial keyframe requests are part of setup).
    room.run(&mut sim, Duration::from_secs(2));
    let before = sim.clients[room.publisher].client.keyframe_requests;
    let window_start = sim.now;
    let test_time = Duration::from_secs(5);
    while sim.now < window_start + test_time {
        for sub in room.subscribers.clone() {
            sim.client(sub.client).request_keyframe(&sub.video);
        }
        room.run(&mut sim, Duration::from_millis(50));
    }
    let got = sim.clients[room.publisher].client.keyframe_requests - before;
    let windows = (test_time.as_millis() / 500) as usize;
    println!(
        "publisher got {got} keyframe requests in {windows} throttle windows; router throttled {}",
        sim.engine.counters().plis_throttled
    );
    assert!(got <= windows + 1, "{got} PLIs reached the publisher in {windows} windows");
    assert!(got >= windows / 2, "keyframe requests were swallowed: {got} in {windows} windows");
    assert!(sim.engine.counters().plis_throttled > 0);
}
