//! Every layer but one stops carrying frames: subscribers get the one left, whichever it is and
//! whatever they asked for (the best below what they want, else the lowest above), and none is
//! ever left without video. When the others come back, each subscriber gets its own layer again.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use integration_tests::sim::{Link, Sim};
use integration_tests::simulcast::{Signaled, SimulcastRoom};

fn link() -> (Link, Link) {
    (Link::default(), Link::default())
}

#[test]
fn only_the_lowest_layer_left() {
    let mut sim = Sim::new(0x16_0004);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Rids, link());
    let subs: Vec<usize> = (0..3u8).map(|l| room.add_subscriber(&mut sim, link(), Some(l))).collect();
    room.run(&mut sim, Duration::from_secs(2));
    for (l, &s) in subs.iter().enumerate() {
        assert_eq!(room.layers_of(&sim, s).current, Some(l as u8));
    }
    let stopped_at = sim.now;
    room.padding_only = [false, true, true];
    room.run(&mut sim, Duration::from_millis(600));
    for &s in &subs {
        let l = room.layers_of(&sim, s);
        assert_eq!((l.current, l.degraded), (Some(0), false), "subscriber {s}: {l:?}");
        assert!(room.longest_gap(&sim, s, stopped_at) <= Duration::from_millis(500), "subscriber {s}");
    }
    room.padding_only = [false; 3];
    room.run(&mut sim, Duration::from_secs(1));
    for (l, &s) in subs.iter().enumerate() {
        assert_eq!(room.layers_of(&sim, s).current, Some(l as u8), "subscriber {s} back on its layer");
    }
    assert_eq!(sim.engine.counters().video_unserved_ms, 0);
}

#[test]
fn only_the_top_layer_left_serves_those_who_want_less() {
    let mut sim = Sim::new(0x16_0005);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Ssrcs, link());
    let low = room.add_subscriber(&mut sim, link(), Some(0));
    let medium = room.add_subscriber(&mut sim, link(), Some(1));
    room.run(&mut sim, Duration::from_secs(2));
    let stopped_at = sim.now;
    room.padding_only = [true, true, false];
    room.run(&mut sim, Duration::from_millis(600));
    for s in [low, medium] {
        let l = room.layers_of(&sim, s);
        assert_eq!((l.current, l.degraded), (Some(2), false), "subscriber {s}: a sharper picture beats none: {l:?}");
        assert!(room.longest_gap(&sim, s, stopped_at) <= Duration::from_millis(500), "subscriber {s}");
    }
    room.padding_only = [false; 3];
    room.run(&mut sim, Duration::from_secs(1));
    assert_eq!(room.layers_of(&sim, low).current, Some(0));
    assert_eq!(room.layers_of(&sim, medium).current, Some(1));
    let c = sim.engine.counters();
    assert_eq!(c.video_unserved_ms, 0, "{c:?}");
}
