//! The join timeline and the freeze count on the simulated network: with 20 ms each way, DTLS
//! cannot finish before two round trips, the first packet arrives no sooner than one trip after the first send,
//! and video starts on a keyframe. A 600 ms outage on one subscriber's downlink is exactly one
//! freeze of at least that long; a subscriber on a clean link has none.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use integration_tests::room::Room;
use integration_tests::sim::{Link, Sim};
use loadtest::Clock;
use loadtest::stats::{JoinTimeline, Step};

#[test]
fn join_timeline_and_freezes_follow_the_network() {
    let mut sim = Sim::new(5);
    let clock = Clock::new(sim.start);
    let mut timeline = JoinTimeline::default();
    timeline.mark(Step::Start, clock.at_us(sim.now));
    // Room::setup connects each client before it returns; the publisher's connection is the
    // first thing it does, so its DTLS time is the first client's connect time.
    let mut room = Room::setup(&mut sim, 0, (Link::default(), Link::default()), (Link::default(), Link::default()));
    timeline.mark(Step::DtlsDone, clock.at_us(sim.now));
    room.add_subscriber(&mut sim, (Link::default(), Link::default()));
    room.add_subscriber(&mut sim, (Link::default(), Link::default()));
    let dtls_ms = timeline.since_start_ms()[3].unwrap();
    assert!((80.0..1000.0).contains(&dtls_ms), "ICE + DTLS over a 40 ms round trip took {dtls_ms} ms");
    assert_eq!(timeline.since_start_ms()[0], None, "steps not marked stay empty");

    let mut sender = common::Sender::default();
    sender.run(&mut sim, &mut room, &clock, Duration::from_secs(3));
    let stalled = room.subscribers[0].client;
    sim.clients[stalled].down.down = true;
    sender.run(&mut sim, &mut room, &clock, Duration::from_millis(600));
    sim.clients[stalled].down.down = false;
    sender.run(&mut sim, &mut room, &clock, Duration::from_secs(3));
    sim.run_for(Duration::from_millis(500));

    let first_send = clock.at_us(sender.first_send.unwrap());
    for (i, sub) in room.subscribers.iter().enumerate() {
        let v = common::account(&sim, sub.client, sub.video.ssrc, true, &clock);
        let a = common::account(&sim, sub.client, sub.audio.ssrc, false, &clock);
        let first = a.first_packet_us.unwrap().min(v.first_packet_us.unwrap());
        let trip = first - first_send;
        // No sooner than the 40 ms trip; str0m paces and the engine batches, so a tick or two more.
        assert!((40_000..100_000).contains(&trip), "first packet {trip} µs after the first send; the trip is 40 ms");
        assert_eq!(v.first_keyframe_us, v.first_packet_us, "video starts on a keyframe");
        if i == 0 {
            assert_eq!(v.freezes, 1, "one outage, one freeze");
            assert!(v.freeze_us >= 600_000, "the freeze lasted the outage: {} µs", v.freeze_us);
        } else {
            assert_eq!(v.freezes, 0, "clean link");
            assert!(v.frames >= 195, "frames {}", v.frames);
        }
    }
}
