//! A layer that stops mid-stream (padding only) and comes back: the subscriber that wants it is
//! moved down within 500 ms with no gap in its video over that, and back up as soon as the layer carries
//! frames again, every switch on a keyframe with the stream's numbering continuous. Repeated,
//! as a publisher's CPU comes and goes.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use integration_tests::sim::{Link, Sim};
use integration_tests::simulcast::{Signaled, SimulcastRoom};

#[test]
fn the_subscriber_follows_the_layer_down_and_back_up() {
    let link = || (Link { jitter: Duration::from_millis(5), ..Link::default() }, Link::default());
    let mut sim = Sim::new(0x16_0003);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Ssrcs, link());
    let sub = room.add_subscriber(&mut sim, link(), Some(2));
    room.run(&mut sim, Duration::from_secs(2));
    let start = sim.now;
    for round in 0..3 {
        room.padding_only[2] = true;
        let down = room.run_until_layer(&mut sim, sub, 1, Duration::from_secs(2));
        assert!(down.is_some_and(|t| t <= Duration::from_millis(500)), "round {round}: down took {down:?}");
        room.run(&mut sim, Duration::from_secs(2));
        room.padding_only[2] = false;
        let up = room.run_until_layer(&mut sim, sub, 2, Duration::from_secs(2));
        println!("round {round}: down in {down:?}, back up in {up:?}");
        // Live on its first frame, a keyframe asked for at the next tick, answered in a round
        // trip (20 ms each way here) plus a frame.
        assert!(up.is_some_and(|t| t <= Duration::from_millis(300)), "round {round}: up took {up:?}");
        room.run(&mut sim, Duration::from_secs(2));
    }
    // The longest wait: seeing the stop (250 ms at 30 fps) and the keyframe of the layer below.
    let gap = room.longest_gap(&sim, sub, start);
    println!("longest gap in the subscriber's video: {gap:?}");
    assert!(gap <= Duration::from_millis(500), "video stood still for {gap:?}");
    assert_eq!(room.layer_sequence_switching_on_keyframes(&sim, sub), vec![2, 1, 2, 1, 2, 1, 2]);
    // The sequence numbers the subscriber saw (the stopped layer's padding included, forwarded
    // until the switch) have no gap across the switches.
    let ssrc = room.subscribers[sub].video.ssrc;
    let mut seqs: Vec<u64> =
        sim.clients[room.subscribers[sub].client].client.received_on(ssrc).iter().map(|r| r.ext_seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let holes: Vec<_> = seqs.windows(2).filter(|w| w[1] != w[0] + 1).collect();
    assert!(holes.is_empty(), "numbering continuous: {holes:?}");
    let l = room.layers_of(&sim, sub);
    assert_eq!((l.current, l.degraded, l.unserved_ms), (Some(2), false, 0), "{l:?}");
    let c = sim.engine.counters();
    assert_eq!((c.simulcast_layers_stopped, c.simulcast_fallbacks), (3, 3), "{c:?}");
    assert!(c.simulcast_layers_started >= 3 + 3, "three layers started, and `f` three times again: {c:?}");
    assert_eq!((c.layer_switch_timeouts, c.video_unserved_ms), (0, 0), "{c:?}");
}
