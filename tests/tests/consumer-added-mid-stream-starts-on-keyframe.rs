//! A subscriber that joins in the middle of a group of pictures gets nothing until a keyframe,
//! which the router asks the publisher for, and from there a continuous stream.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use integration_tests::media::{is_vp8_keyframe_start, tag};
use integration_tests::room::Room;
use integration_tests::sim::{Link, Sim};

#[test]
fn late_consumer_starts_on_a_keyframe() {
    let mut sim = Sim::new(0x5eed_0004);
    let link = (Link::default(), Link::default());
    let mut room = Room::setup(&mut sim, 1, link, link);
    room.video.keyframe_interval = 300; // 10 s: the late joiner cannot wait for a periodic one
    room.run(&mut sim, Duration::from_millis(3100));
    let late = room.add_subscriber(&mut sim, link);
    let joined = sim.now;
    room.run(&mut sim, Duration::from_secs(2));

    let sub = room.subscribers[late].clone();
    let received = sim.clients[sub.client].client.received_on(sub.video.ssrc);
    let first = received.first().expect("late subscriber got video");
    assert!(is_vp8_keyframe_start(&first.payload), "first packet is not a keyframe start: {:?}", tag(&first.payload));
    assert!(first.at - joined < Duration::from_secs(1), "keyframe took {:?}", first.at - joined);
    for w in received.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "sequence gap after joining");
    }
}
