//! A recorder that cannot keep up never slows forwarding: when the tap sink refuses records
//! (its ring is full), the engine drops and counts them, and the subscriber still gets every
//! packet.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use integration_tests::room::Room;
use integration_tests::sim::{Link, Sim};
use router_engine::tap::VecTapSink;

#[test]
fn a_full_tap_drops_and_counts_while_forwarding_goes_on() {
    let mut sim = Sim::new(0x7a9_0001);
    let link = (Link::default(), Link::default());
    let mut room = Room::setup(&mut sim, 1, link, link);
    // Room for 40 records: the start records and a few packets, then "full".
    sim.engine
        .set_tap_sink(schema::tap::TapReader::Recorder, Box::new(VecTapSink { records: Vec::new(), limit: Some(40) }));
    sim.engine.start_tap(sim.now, room.video_producer, 9, "{}".into(), schema::tap::TapReader::Recorder).unwrap();
    sim.engine.start_tap(sim.now, room.audio_producer, 9, "{}".into(), schema::tap::TapReader::Recorder).unwrap();
    room.run(&mut sim, Duration::from_secs(3));
    sim.run_for(Duration::from_millis(200));

    let c = sim.engine.counters().clone();
    assert_eq!(c.tap_records, 40, "{c:?}");
    assert!(c.tap_dropped > 300, "drops are counted: {c:?}");
    let sub = room.subscribers[0].clone();
    let client = &sim.clients[sub.client].client;
    let video: std::collections::BTreeSet<u16> = client.received_on(sub.video.ssrc).iter().map(|r| r.seq).collect();
    let audio = client.received_on(sub.audio.ssrc).len() as u64;
    assert_eq!(video.len() as u64, room.sent_video, "every video packet forwarded");
    assert_eq!(audio, room.sent_audio, "every audio packet forwarded");
}
