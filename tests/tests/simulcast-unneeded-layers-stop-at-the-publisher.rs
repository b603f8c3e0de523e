//! Layers nobody needs stop at the publisher and come back when needed (`uplink`): after 30 s
//! (the default `stop_unneeded_layers_after`) in which no consumer needed the layers above some layer, the router caps the publisher's
//! send rate with REMB so its simulcast allocator leaves them out; when a consumer needs one
//! again the cap is lifted at once. The simulated publisher obeys REMB the way a browser does
//! (a layer is sent only while it and the layers below fit).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use integration_tests::sim::{Link, Sim};
use integration_tests::simulcast::{LAYER_BPS, Signaled, SimulcastRoom};
use router_engine::EngineConfig;
use router_engine::uplink::LIFTED_BPS;

/// The grace before a layer nobody needs is stopped.
fn grace() -> Duration {
    EngineConfig::default().stop_unneeded_layers_after
}

fn link() -> (Link, Link) {
    (Link::default(), Link::default())
}

/// A REMB that lifts the cap (REMB's mantissa and exponent round the value).
fn is_lift(bps: u64) -> bool {
    bps >= LIFTED_BPS / 2
}

fn rembs(sim: &Sim, room: &SimulcastRoom) -> Vec<(Instant, u64)> {
    sim.clients[room.publisher].client.remb.clone()
}

/// Runs until `done` holds or `limit` passes; returns how long it took.
fn run_until(
    sim: &mut Sim,
    room: &mut SimulcastRoom,
    limit: Duration,
    done: impl Fn(&Sim, &SimulcastRoom) -> bool,
) -> Option<Duration> {
    let start = sim.now;
    while !done(sim, room) {
        if sim.now >= start + limit {
            return None;
        }
        room.run(sim, Duration::from_millis(20));
    }
    Some(sim.now - start)
}

#[test]
fn layers_nobody_needs_stop_and_resume_when_asked_for() {
    let mut sim = Sim::new(0x51_0020);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Ssrcs, link());
    room.obey_remb = true;
    let sub = room.add_subscriber(&mut sim, link(), Some(0));
    room.run(&mut sim, grace() - Duration::from_secs(1));
    assert!(rembs(&sim, &room).is_empty(), "no cap before the grace: {:?}", rembs(&sim, &room));
    assert_eq!(room.sending, [true; 3]);

    let capped = run_until(&mut sim, &mut room, Duration::from_secs(3), |sim, room| !rembs(sim, room).is_empty());
    assert!(capped.is_some(), "no cap 2 s after the grace");
    let (_, cap) = *rembs(&sim, &room).last().unwrap();
    println!("capped {:?} into the call, at {cap} bit/s", grace() - Duration::from_secs(1) + capped.unwrap());
    assert!(cap > LAYER_BPS[0] && cap < LAYER_BPS[0] + LAYER_BPS[1], "cap {cap} keeps q (and audio), not h");
    room.run(&mut sim, Duration::from_secs(5));
    assert_eq!(room.sending, [true, false, false], "the publisher stopped h and f");
    assert_eq!(room.layers_of(&sim, sub).current, Some(0));
    let counters = sim.engine.counters().clone();
    assert!(counters.uplink_remb_sent >= 5, "the cap is resent every second: {counters:?}");
    // Video kept flowing to the subscriber on q.
    let got = room.received(&sim, sub);
    assert!(got.last().unwrap().at > sim.now - Duration::from_millis(200));

    // Asking for f lifts the cap at once and the subscriber gets f soon after.
    sim.engine.set_preferred_layer(room.subscribers[sub].video.id, 2).unwrap();
    let before = rembs(&sim, &room).len();
    let lifted = run_until(&mut sim, &mut room, Duration::from_secs(1), |sim, room| {
        rembs(sim, room)[before..].iter().any(|&(_, bps)| is_lift(bps))
    });
    let on_top =
        run_until(&mut sim, &mut room, Duration::from_secs(3), |sim, room| room.layers_of(sim, sub).current == Some(2));
    println!("lifted after {lifted:?}; on f {on_top:?} after that");
    assert!(lifted.is_some_and(|d| d <= Duration::from_millis(400)), "lift took {lifted:?}");
    assert!(on_top.is_some_and(|d| d <= Duration::from_secs(2)), "f took {on_top:?} after the lift");
    assert_eq!(room.sending, [true; 3]);
    // Every lift is repeated, and nothing caps again while f is needed.
    room.run(&mut sim, grace() + Duration::from_secs(2));
    let after: Vec<u64> = rembs(&sim, &room)[before..].iter().map(|&(_, bps)| bps).collect();
    assert!(after.iter().all(|&bps| is_lift(bps)), "{after:?}");
    assert!(after.len() >= 3, "the lift is repeated: {after:?}");
}

#[test]
fn one_subscriber_needing_the_top_layer_keeps_it_for_everyone() {
    let mut sim = Sim::new(0x51_0021);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Rids, link());
    room.obey_remb = true;
    let low = room.add_subscriber(&mut sim, link(), Some(0));
    let high = room.add_subscriber(&mut sim, link(), None);
    room.run(&mut sim, grace() + Duration::from_secs(5));
    assert!(rembs(&sim, &room).is_empty(), "{:?}", rembs(&sim, &room));
    assert_eq!(room.layers_of(&sim, low).current, Some(0));
    assert_eq!(room.layers_of(&sim, high).current, Some(2));
    // The one that wanted f leaves: only h and f go unneeded, q stays.
    sim.engine.close_consumer(room.subscribers[high].video.id).unwrap();
    room.run(&mut sim, grace() + Duration::from_secs(2));
    assert_eq!(room.sending, [true, false, false]);
}

#[test]
fn a_publisher_nobody_watches_keeps_only_its_lowest_layer() {
    let mut sim = Sim::new(0x51_0022);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Ssrcs, link());
    room.obey_remb = true;
    room.run(&mut sim, grace() + Duration::from_secs(2));
    assert_eq!(room.sending, [true, false, false], "rembs {:?}", rembs(&sim, &room));
    // Someone joins and wants the best: the lowest layer at once, the top after the lift.
    let sub = room.add_subscriber(&mut sim, link(), None);
    let first = run_until(&mut sim, &mut room, Duration::from_secs(1), |sim, room| !room.received(sim, sub).is_empty());
    let on_top =
        run_until(&mut sim, &mut room, Duration::from_secs(3), |sim, room| room.layers_of(sim, sub).current == Some(2));
    println!("first video after {first:?}; on f {on_top:?} after that");
    assert!(first.is_some(), "the lowest layer never stopped");
    assert!(on_top.is_some_and(|d| d <= Duration::from_secs(2)), "f took {on_top:?}");
}

#[test]
fn flipping_between_layers_never_stops_one() {
    let mut sim = Sim::new(0x51_0023);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Ssrcs, link());
    room.obey_remb = true;
    let sub = room.add_subscriber(&mut sim, link(), None);
    for layer in [0u8, 2, 1, 2, 0, 2] {
        sim.engine.set_preferred_layer(room.subscribers[sub].video.id, layer).unwrap();
        room.run(&mut sim, grace() * 3 / 5);
    }
    assert!(
        rembs(&sim, &room).is_empty(),
        "a layer unneeded for less than the grace is not stopped: {:?}",
        rembs(&sim, &room)
    );
    assert_eq!(sim.engine.counters().uplink_remb_sent, 0);
}
