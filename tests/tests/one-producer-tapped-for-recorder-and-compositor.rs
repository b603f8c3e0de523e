//! A producer can be tapped for a track recording and a composite job at once: each tap's
//! records go to its own reader's sink under its own number, and ending one tap leaves the
//! other running.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use integration_tests::room::Room;
use integration_tests::sim::{Link, Sim};
use router_engine::tap::SharedTapSink;
use schema::tap::{TapReader, TapRecord};

/// (Start, Rtp, SenderReport, Stop) records per tap number, and any other tap number seen.
fn tally(records: &[Vec<u8>]) -> std::collections::BTreeMap<u32, [u32; 4]> {
    let mut by_tap = std::collections::BTreeMap::new();
    for r in records {
        let rec = TapRecord::decode(r).unwrap();
        let (tap, kind) = match rec {
            TapRecord::Start { tap, .. } => (tap, 0),
            TapRecord::Rtp { tap, .. } => (tap, 1),
            TapRecord::SenderReport { tap, .. } => (tap, 2),
            TapRecord::Stop { tap, .. } => (tap, 3),
        };
        by_tap.entry(tap).or_insert([0u32; 4])[kind] += 1;
    }
    by_tap
}

#[test]
fn both_readers_get_their_own_tap_and_ending_one_leaves_the_other() {
    let mut sim = Sim::new(0x7a9_0002);
    let link = (Link::default(), Link::default());
    let mut room = Room::setup(&mut sim, 1, link, link);
    let (recorder, compositor) = (SharedTapSink::default(), SharedTapSink::default());
    sim.engine.set_tap_sink(TapReader::Recorder, Box::new(recorder.clone()));
    sim.engine.set_tap_sink(TapReader::Compositor, Box::new(compositor.clone()));
    let video = room.video_producer;
    sim.engine.start_tap(sim.now, video, 1, "{}".into(), TapReader::Recorder).unwrap();
    sim.engine.start_tap(sim.now, video, 2, "{}".into(), TapReader::Compositor).unwrap();
    room.run(&mut sim, Duration::from_secs(2));

    let (r, c) = (tally(&recorder.take()), tally(&compositor.take()));
    assert_eq!(r.keys().copied().collect::<Vec<_>>(), [1], "the recorder sees only its tap: {r:?}");
    assert_eq!(c.keys().copied().collect::<Vec<_>>(), [2], "the compositor sees only its tap: {c:?}");
    assert!(r[&1][1] > 100 && r[&1][1] == c[&2][1], "every packet to both: {r:?} {c:?}");
    assert!(r[&1][0] >= 2 && c[&2][0] >= 2, "starts repeated for both: {r:?} {c:?}");

    // Ending the composite's tap: the compositor hears its Stop; the recorder goes on.
    sim.engine.stop_tap(video, Some(2)).unwrap();
    room.run(&mut sim, Duration::from_secs(1));
    let (r, c) = (tally(&recorder.take()), tally(&compositor.take()));
    assert_eq!(c.get(&2).map(|t| (t[1], t[3])), Some((0, 1)), "one Stop and no more packets: {c:?}");
    assert!(r[&1][1] > 30 && r[&1][3] == 0, "the recording goes on: {r:?}");

    // A reader without a sink refuses taps with a reason.
    let mut bare = Sim::new(0x7a9_0003);
    let bare_room = Room::setup(&mut bare, 1, link, link);
    let err = bare.engine.start_tap(bare.now, bare_room.video_producer, 3, "{}".into(), TapReader::Compositor);
    assert!(err.unwrap_err().to_string().contains("no media tap"));

    // Closing the producer ends what is left, for its reader.
    sim.engine.close_producer(video).unwrap();
    let r = tally(&recorder.take());
    assert_eq!(r[&1][3], 1, "the recorder hears the end: {r:?}");
    assert!(compositor.take().is_empty());
}
