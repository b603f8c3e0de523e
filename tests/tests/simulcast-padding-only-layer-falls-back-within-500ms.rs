//! A publisher whose top layer carries only padding (Chromium's stopped encoder: packets with no
//! payload, but no frames) gets its subscribers the
//! next layer down within 500 ms, whether the layer was never encoded or stops mid-stream. The
//! subscriber is not reported degraded (its link is not the reason), and the fallback is
//! counted.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use integration_tests::sim::{Link, Sim};
use integration_tests::simulcast::{Signaled, SimulcastRoom};
use schema::api::Event;

fn link() -> (Link, Link) {
    (Link::default(), Link::default())
}

#[test]
fn a_top_layer_that_never_carries_frames_is_passed_over_at_once() {
    for signaled in [Signaled::Ssrcs, Signaled::Rids] {
        let mut sim = Sim::new(0x16_0001);
        let mut room = SimulcastRoom::setup(&mut sim, signaled, link());
        room.padding_only[2] = true;
        room.run(&mut sim, Duration::from_secs(1));
        let sub = room.add_subscriber(&mut sim, link(), None);
        let took = room.run_until_layer(&mut sim, sub, 1, Duration::from_secs(2));
        println!("{signaled:?}: first `h` packet after {took:?}");
        assert!(took.is_some_and(|t| t <= Duration::from_millis(500)), "{signaled:?}: `h` took {took:?}");
        room.run(&mut sim, Duration::from_secs(2));
        let l = room.layers_of(&sim, sub);
        assert_eq!((l.preferred, l.target, l.current), (Some(2), Some(1), Some(1)), "{signaled:?}: {l:?}");
        assert!(!l.degraded, "the publisher, not the link, is short: {l:?}");
        assert_eq!(l.live_layers, [true, true, false], "{l:?}");
        assert_eq!(l.unserved_ms, 0, "{l:?}");
        let c = sim.engine.counters();
        assert_eq!(c.simulcast_fallbacks, 1, "{c:?}");
        // The padding never made `f` a candidate: no keyframe of it was asked for in vain.
        assert_eq!(c.layer_switch_timeouts, 0, "{c:?}");
        assert_eq!(room.layer_sequence_switching_on_keyframes(&sim, sub), vec![1]);
    }
}

#[test]
fn a_top_layer_that_stops_mid_stream_is_left_within_500ms() {
    let mut sim = Sim::new(0x16_0002);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Rids, link());
    let sub = room.add_subscriber(&mut sim, link(), None);
    room.run(&mut sim, Duration::from_secs(2));
    assert_eq!(room.layers_of(&sim, sub).current, Some(2));
    let events_before = sim.events.len();
    let stopped_at = sim.now;
    room.padding_only[2] = true;
    let took = room.run_until_layer(&mut sim, sub, 1, Duration::from_secs(2));
    println!("`h` arrived {took:?} after `f` stopped");
    assert!(took.is_some_and(|t| t <= Duration::from_millis(500)), "`h` took {took:?}");
    room.run(&mut sim, Duration::from_secs(1));
    assert!(room.longest_gap(&sim, sub, stopped_at) <= Duration::from_millis(500));
    let l = room.layers_of(&sim, sub);
    assert_eq!((l.target, l.current, l.degraded), (Some(1), Some(1), false), "{l:?}");
    // What the SDK is told (`on-track-layer-update`): the layer forwarded, not degraded.
    let reported: Vec<_> = sim.events[events_before..]
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ConsumerLayersChanged { current, degraded, .. } => Some((*current, *degraded)),
            _ => None,
        })
        .collect();
    assert_eq!(reported.last(), Some(&(Some(1), false)), "{reported:?}");
    assert!(reported.iter().all(|(_, degraded)| !degraded), "{reported:?}");
    let c = sim.engine.counters();
    assert_eq!(c.simulcast_layers_stopped, 1, "{c:?}");
    assert_eq!(c.video_unserved_ms, 0, "{c:?}");
}

#[test]
fn a_keyframe_asked_for_by_another_subscriber_does_not_hold_the_fallback_back() {
    // B starts on `h` (a PLI for `h`, answered at once); `f` stops just after, so A needs a
    // keyframe of `h` while the PLI throttle's window for `h` is still open. The answered
    // request does not make A wait out the window.
    let mut sim = Sim::new(0x16_0007);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Ssrcs, link());
    let a = room.add_subscriber(&mut sim, link(), Some(2));
    room.run(&mut sim, Duration::from_secs(2));
    assert_eq!(room.layers_of(&sim, a).current, Some(2));
    let b = room.add_subscriber(&mut sim, link(), Some(1));
    room.run(&mut sim, Duration::from_millis(30));
    room.padding_only[2] = true;
    let took = room.run_until_layer(&mut sim, a, 1, Duration::from_secs(2));
    println!("A got `h` {took:?} after `f` stopped");
    assert!(took.is_some_and(|t| t <= Duration::from_millis(500)), "`h` took {took:?}");
    assert_eq!(room.layers_of(&sim, b).current, Some(1));
}
