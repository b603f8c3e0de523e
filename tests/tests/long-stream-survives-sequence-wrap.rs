//! A stream long enough to wrap its 16-bit sequence numbers (and cross the half-way point of
//! the sequence space that "older than the start" checks trip on): every packet still reaches
//! the subscriber, numbered continuously, through SRTP rollover on both legs.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use integration_tests::media::tag;
use integration_tests::room::Room;
use integration_tests::sim::{Link, Sim};

#[test]
fn seventy_thousand_packets_arrive_continuously() {
    let mut sim = Sim::new(0x5eed_0007);
    let link = (Link::default(), Link::default());
    let mut room = Room::setup(&mut sim, 1, link, link);
    // 25 packets per frame at 30 fps: 750 packets/s, 72 000 in 96 s.
    room.video.packets_per_frame = 25;
    room.video.payload_size = 200;
    room.video.seq = 60_000; // wrap early, then cross 32768 after the start too
    room.run(&mut sim, Duration::from_secs(96));
    sim.run_for(Duration::from_secs(1));

    let sub = &room.subscribers[0];
    let got = sim.clients[sub.client].client.received_on(sub.video.ssrc);
    let expected = room.video.frame as usize * room.video.packets_per_frame as usize;
    assert!(got.len() >= 70_000, "only {} packets", got.len());
    assert_eq!(got.len(), expected, "lost packets on a clean link");
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
        assert_eq!(w[1].ext_seq, w[0].ext_seq + 1, "extended sequence (ROC) broke");
        assert!(tag(&w[1].payload) > tag(&w[0].payload));
    }
}
