//! Layer choice by the subscriber (`set_preferred_layer`), rid-based simulcast bound from the
//! mid and rid header extensions, and what goes wrong: a layer that never starts, a keyframe
//! that never comes (the switch gives up and the consumer stays where it was), an unknown rid,
//! and feedback about SSRCs the router never sent. Audio levels name the speaking producer.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use integration_tests::sim::{Link, Sim};
use integration_tests::simulcast::{Signaled, SimulcastRoom};
use schema::api::Event;

fn link() -> (Link, Link) {
    (Link::default(), Link::default())
}

#[test]
fn the_subscriber_gets_the_layer_it_prefers_within_a_second() {
    for signaled in [Signaled::Ssrcs, Signaled::Rids] {
        let mut sim = Sim::new(0x51_0010);
        let mut room = SimulcastRoom::setup(&mut sim, signaled, link());
        let sub = room.add_subscriber(&mut sim, link(), Some(0));
        room.run(&mut sim, Duration::from_secs(2));
        assert_eq!(room.layers_of(&sim, sub).current, Some(0), "{signaled:?}");
        for layer in [1u8, 2, 0, 2] {
            sim.engine.set_preferred_layer(room.subscribers[sub].video.id, layer).unwrap();
            let start = sim.now;
            while room.layers_of(&sim, sub).current != Some(layer) && sim.now < start + Duration::from_secs(1) {
                room.run(&mut sim, Duration::from_millis(20));
            }
            let took = sim.now - start;
            assert_eq!(room.layers_of(&sim, sub).current, Some(layer), "{signaled:?}: no switch to {layer} in 1 s");
            println!("{signaled:?}: switched to layer {layer} in {took:?}");
        }
        room.run(&mut sim, Duration::from_millis(500));
        // What arrived last is the layer asked for last.
        let got = room.received(&sim, sub);
        assert_eq!(got.last().unwrap().layer, 2);
        assert_eq!(sim.engine.counters().rtp_unknown_rid, 0);
    }
}

#[test]
fn a_layer_that_never_starts_is_skipped() {
    let mut sim = Sim::new(0x51_0011);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Ssrcs, link());
    room.sending[2] = false;
    let sub = room.add_subscriber(&mut sim, link(), None);
    room.run(&mut sim, Duration::from_secs(3));
    let l = room.layers_of(&sim, sub);
    assert_eq!(l.current, Some(1), "the best layer that flows: {l:?}");
    assert!(!l.degraded, "a missing layer is not the subscriber's bandwidth: {l:?}");
    // It starts later: the consumer moves up.
    room.sending[2] = true;
    room.run(&mut sim, Duration::from_secs(3));
    assert_eq!(room.layers_of(&sim, sub).current, Some(2));
}

#[test]
fn a_switch_whose_keyframe_never_comes_gives_up_and_stays() {
    let mut sim = Sim::new(0x51_0012);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Ssrcs, link());
    let sub = room.add_subscriber(&mut sim, link(), Some(0));
    room.run(&mut sim, Duration::from_secs(2));
    assert_eq!(room.layers_of(&sim, sub).current, Some(0));
    // The upper layers never answer keyframe requests (nor send periodic ones).
    room.deaf = [false, true, true];
    room.run(&mut sim, Duration::from_secs(1));
    sim.engine.set_preferred_layer(room.subscribers[sub].video.id, 2).unwrap();
    let received_before = room.received(&sim, sub).len();
    room.run(&mut sim, Duration::from_secs(10));
    let l = room.layers_of(&sim, sub);
    let counters = sim.engine.counters().clone();
    println!("{l:?}; timeouts {}", counters.layer_switch_timeouts);
    assert_eq!(l.current, Some(0), "stays on the layer it had");
    assert!(counters.layer_switch_timeouts >= 1, "{counters:?}");
    // Video never stopped meanwhile: about 30 packets a second of the low layer.
    let received = room.received(&sim, sub).len() - received_before;
    assert!(received >= 250, "only {received} packets in 10 s while waiting");
}

#[test]
fn unknown_rids_and_feedback_for_unknown_ssrcs_are_counted() {
    let mut sim = Sim::new(0x51_0013);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Rids, link());
    // A fourth stream on the same mid with a rid the producer does not have.
    let stray = sim.client(room.publisher).publish_simulcast("v0", &["x"]).remove(0);
    let sub = room.add_subscriber(&mut sim, link(), None);
    room.run(&mut sim, Duration::from_secs(1));
    let now = sim.now;
    for i in 0..10u64 {
        sim.client(room.publisher).send(&stray, now, 500 + i, 1234, false, &[0x10, 0, 0, 0, 0, 0, 0, 0]);
    }
    // The subscriber asks for a keyframe of a stream it was never sent.
    let bogus = schema::api::ConsumerInfo { ssrc: 0x0bad_f00d, rtx_ssrc: None, ..room.subscribers[sub].video.clone() };
    let client = room.subscribers[sub].client;
    sim.client(client).subscribe("v9", &bogus);
    sim.client(client).request_keyframe(&bogus);
    room.run(&mut sim, Duration::from_secs(2));
    let c = sim.engine.counters().clone();
    println!("{c:?}");
    assert!(c.rtp_unknown_rid >= 1, "{c:?}");
    assert!(c.feedback_unknown_ssrc >= 1, "{c:?}");
    // And the call goes on.
    assert_eq!(room.layers_of(&sim, sub).current, Some(2));
}

#[test]
fn audio_levels_name_the_producer_that_speaks() {
    let mut sim = Sim::new(0x51_0014);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Ssrcs, link());
    room.add_subscriber(&mut sim, link(), None);
    room.run(&mut sim, Duration::from_secs(3));
    let reports: Vec<_> = sim
        .events
        .iter()
        .filter_map(|(at, e)| match e {
            Event::AudioLevels { levels } => Some((*at, levels.clone())),
            _ => None,
        })
        .collect();
    assert!(reports.len() >= 4, "about one report every 500 ms while someone speaks: {}", reports.len());
    for w in reports.windows(2) {
        assert!(w[1].0 - w[0].0 >= Duration::from_millis(500), "reports closer than 500 ms");
    }
    let (_, last) = reports.last().unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].producer, room.audio_producer);
    // str0m sends -30 dBov.
    assert!((40..=80).contains(&last[0].level), "level {}", last[0].level);
}
