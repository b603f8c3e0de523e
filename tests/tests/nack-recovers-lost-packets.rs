//! With 5 % random loss on the publisher's uplink, the router NACKs what it misses, the
//! publisher (str0m) retransmits over RTX, and every subscriber still gets ≥ 99.5 % of the
//! video packets.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::time::Duration;

use integration_tests::media::tag;
use integration_tests::room::Room;
use integration_tests::sim::{Link, Sim};

#[test]
fn nack_recovers_lost_packets() {
    let mut sim = Sim::new(0x5eed_0001);
    let lossy = Link { loss: 0.05, ..Link::default() };
    let mut room = Room::setup(&mut sim, 3, (lossy, Link::default()), (Link::default(), Link::default()));
    room.run(&mut sim, Duration::from_secs(20));
    // Let the last retransmissions land.
    sim.run_for(Duration::from_secs(1));

    let frames_sent = room.video.frame;
    let per_frame = room.video.packets_per_frame as usize;
    let counters = sim.engine.counters().clone();
    assert!(counters.nacks_sent > 0, "the router sent no NACK despite loss: {counters:?}");
    for sub in &room.subscribers {
        let received = sim.clients[sub.client].client.received_on(sub.video.ssrc);
        let tags: BTreeSet<(u32, u16)> = received.iter().filter_map(|r| tag(&r.payload)).collect();
        let first_frame = tags.iter().next().expect("subscriber got video").0;
        let expected = (frames_sent - first_frame) as usize * per_frame;
        let ratio = tags.len() as f64 / expected as f64;
        println!("subscriber {}: {} of {} video packets ({:.2} %)", sub.client, tags.len(), expected, ratio * 100.0);
        assert!(ratio >= 0.995, "subscriber {} got only {:.2} % of video packets", sub.client, ratio * 100.0);
    }
}

#[test]
fn without_loss_nothing_is_nacked() {
    let mut sim = Sim::new(0x5eed_0002);
    let mut room = Room::setup(&mut sim, 1, (Link::default(), Link::default()), (Link::default(), Link::default()));
    room.run(&mut sim, Duration::from_secs(5));
    assert_eq!(sim.engine.counters().nacks_sent, 0);
}
