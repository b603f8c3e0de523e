//! A subscription that starts while the publisher encodes only `q` (its `h` and `f` streams carry
//! padding): the subscriber wanting `high` starts on `q` at once, is told so (`current` low, not
//! degraded), and moves up when the upper layers carry frames again.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use integration_tests::sim::{Link, Sim};
use integration_tests::simulcast::{Signaled, SimulcastRoom};

fn link() -> (Link, Link) {
    (Link::default(), Link::default())
}

#[test]
fn starts_on_q_and_moves_up_when_the_others_carry_frames() {
    let mut sim = Sim::new(0x16_0006);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Rids, link());
    room.padding_only = [false, true, true];
    room.run(&mut sim, Duration::from_secs(2));
    let sub = room.add_subscriber(&mut sim, link(), Some(2));
    // Aimed at the live layer from the start, not at what it asked for.
    let l = room.layers_of(&sim, sub);
    assert_eq!((l.preferred, l.target, l.live_layers), (Some(2), Some(0), [true, false, false]), "{l:?}");
    let took = room.run_until_layer(&mut sim, sub, 0, Duration::from_secs(2));
    println!("first `q` packet after {took:?}");
    assert!(took.is_some_and(|t| t <= Duration::from_millis(500)), "`q` took {took:?}");
    room.run(&mut sim, Duration::from_secs(2));
    let l = room.layers_of(&sim, sub);
    assert_eq!((l.current, l.degraded, l.unserved_ms), (Some(0), false, 0), "{l:?}");
    assert_eq!(sim.engine.counters().layer_switch_timeouts, 0);

    room.padding_only = [false; 3];
    let up = room.run_until_layer(&mut sim, sub, 2, Duration::from_secs(1));
    println!("`f` after {up:?}");
    assert!(up.is_some(), "moved up once `f` carries frames");
    let l = room.layers_of(&sim, sub);
    assert_eq!((l.current, l.live_layers), (Some(2), [true; 3]), "{l:?}");
    assert_eq!(room.layer_sequence_switching_on_keyframes(&sim, sub), vec![0, 2]);
}
