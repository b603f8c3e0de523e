//! `video_unserved_ms` counts the time a subscriber that wants video, may have it, and whose
//! publisher sends it, gets none: here a subscription whose keyframe never comes (the publisher
//! ignores keyframe requests and sends no periodic ones) until the publisher answers again.
//! The counter that proves the fallback tests' zeros can be anything but zero.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use integration_tests::sim::{Link, Sim};
use integration_tests::simulcast::{Signaled, SimulcastRoom};

fn link() -> (Link, Link) {
    (Link::default(), Link::default())
}

#[test]
fn a_subscriber_without_a_keyframe_is_counted_unserved_until_one_comes() {
    let mut sim = Sim::new(0x16_0008);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Ssrcs, link());
    room.deaf = [true; 3];
    room.run(&mut sim, Duration::from_secs(1));
    let sub = room.add_subscriber(&mut sim, link(), Some(0));
    room.run(&mut sim, Duration::from_secs(3));
    let l = room.layers_of(&sim, sub);
    assert_eq!(l.current, None, "no keyframe, nothing forwarded: {l:?}");
    // 3 s without video, the first 500 ms of grace included once the gap passes it.
    assert!((2_800..=3_000).contains(&l.unserved_ms), "{l:?}");
    assert_eq!(sim.engine.counters().video_unserved_ms, l.unserved_ms);

    room.deaf = [false; 3];
    let served = room.run_until_layer(&mut sim, sub, 0, Duration::from_secs(2));
    assert!(served.is_some(), "the keyframe comes once the publisher answers");
    let at_served = room.layers_of(&sim, sub).unserved_ms;
    room.run(&mut sim, Duration::from_secs(2));
    let l = room.layers_of(&sim, sub);
    assert_eq!(l.current, Some(0));
    assert_eq!(l.unserved_ms, at_served, "served: the count stops");
}
