//! A subscriber whose downlink is capped at 400 kbit/s settles on the lowest simulcast layer
//! within 5 s (the router's estimate from transport-cc feedback falls below the upper layers);
//! when the cap is lifted, probing finds the room and it climbs to the top layer within 10 s.
//! Every switch happens on a keyframe of the new layer, and the subscriber sees one stream:
//! sequence numbers and VP8 picture ids continue across each switch.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use integration_tests::sim::{Link, Sim};
use integration_tests::simulcast::{Got, Signaled, SimulcastRoom};

/// Runs in 100 ms steps until `done` or `limit`; returns the time it took.
fn run_until(
    sim: &mut Sim,
    room: &mut SimulcastRoom,
    limit: Duration,
    mut done: impl FnMut(&Sim, &SimulcastRoom) -> bool,
) -> Option<Duration> {
    let start = sim.now;
    while sim.now < start + limit {
        room.run(sim, Duration::from_millis(100));
        if done(sim, room) {
            return Some(sim.now - start);
        }
    }
    None
}

/// The received stream in sequence order, one entry per sequence number.
fn by_sequence(got: &[Got]) -> Vec<Got> {
    let mut v = got.to_vec();
    v.sort_by_key(|g| g.seq);
    v.dedup_by_key(|g| g.seq);
    v
}

/// Checks the switches of a received stream; returns how many there were. Switches that
/// arrived after `clean_from` (when the link dropped nothing any more) must be seamless; before,
/// the bottleneck may have dropped the packets right before a switch (and the router, short of
/// bandwidth, does not resend all of them), so only the keyframe rule is checked there.
fn check_switches(got: &[Got], clean_from: Instant) -> usize {
    let seq = by_sequence(got);
    assert!(seq[0].keyframe, "the stream must start on a keyframe");
    let mut switches = 0;
    for w in seq.windows(2) {
        if w[0].layer == w[1].layer {
            continue;
        }
        switches += 1;
        if w[1].at < clean_from && w[1].seq != w[0].seq + 1 {
            // The packets around the switch (its keyframe among them) died in the bottleneck.
            continue;
        }
        assert!(w[1].keyframe, "switch {} → {} at seq {} is not on a keyframe", w[0].layer, w[1].layer, w[1].seq);
        if w[1].at < clean_from {
            continue;
        }
        assert_eq!(w[1].seq, w[0].seq + 1, "sequence gap at the switch {} → {}", w[0].layer, w[1].layer);
        let (a, b) = (w[0].picture_id.unwrap(), w[1].picture_id.unwrap());
        assert_eq!(b, (a + 1) & 0x7fff, "VP8 picture id jumps at the switch {} → {}", w[0].layer, w[1].layer);
    }
    // Continuity on the clean link: nothing missing.
    let clean: Vec<&Got> = seq.iter().filter(|g| g.at >= clean_from).collect();
    let span = clean.last().unwrap().seq - clean[0].seq + 1;
    let missing = span - clean.len() as u64;
    assert!(missing * 1000 <= span, "{missing} of {span} sequence numbers never arrived on the clean link");
    switches
}

#[test]
fn capped_subscriber_settles_low_and_climbs_when_the_cap_lifts() {
    let mut sim = Sim::new(0x51_0001);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Ssrcs, (Link::default(), Link::default()));
    let capped = Link { rate_bps: Some(400_000), ..Link::default() };
    let sub = room.add_subscriber(&mut sim, (Link::default(), capped), None);

    let settled = run_until(&mut sim, &mut room, Duration::from_secs(5), |sim, room| {
        room.layers_of(sim, sub).current == Some(0) && room.layers_of(sim, sub).target == Some(0)
    });
    let layers = room.layers_of(&sim, sub);
    println!("capped: settled on the lowest layer after {settled:?}: {layers:?}");
    assert!(settled.is_some(), "not on the lowest layer within 5 s: {layers:?}");
    // It stays there while the cap holds.
    for _ in 0..50 {
        room.run(&mut sim, Duration::from_millis(100));
        let l = room.layers_of(&sim, sub);
        assert_eq!(l.current, Some(0), "left the lowest layer under the cap: {l:?}");
        assert!(l.degraded, "a subscriber held below what it asked for is degraded: {l:?}");
    }
    let est = room.layers_of(&sim, sub).estimate_bps.unwrap();
    assert!(est <= 420_000, "estimate {est} above the 400 kbit/s link");

    let client = room.subscribers[sub].client;
    sim.clients[client].down.rate_bps = None;
    // What was queued at the bottleneck drains within its 200 ms.
    let clean_from = sim.now + Duration::from_millis(300);
    let climbed = run_until(&mut sim, &mut room, Duration::from_secs(10), |sim, room| {
        room.layers_of(sim, sub).current == Some(2)
    });
    let layers = room.layers_of(&sim, sub);
    println!("uncapped: on the top layer after {climbed:?}: {layers:?}");
    assert!(climbed.is_some(), "not on the top layer within 10 s of lifting the cap: {layers:?}");
    assert!(!layers.degraded);
    room.run(&mut sim, Duration::from_secs(2));

    let got = room.received(&sim, sub);
    let switches = check_switches(&got, clean_from);
    let counters = sim.engine.counters();
    println!("switches seen by the subscriber: {switches}; router: {counters:?}");
    assert!(switches >= 2, "expected at least a fall and a climb, saw {switches}");
    assert_eq!(counters.layer_switches, room.layers_of(&sim, sub).switches);
    assert!(counters.probe_packets > 0, "the climb should have been found by probing");
    assert!(counters.twcc_feedback_received > 0);
}

#[test]
fn uncapped_subscriber_starts_on_the_top_layer_and_holds_it_under_3_percent_loss() {
    let mut sim = Sim::new(0x51_0002);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Ssrcs, (Link::default(), Link::default()));
    let lossy = Link { loss: 0.03, ..Link::default() };
    let sub = room.add_subscriber(&mut sim, (Link::default(), lossy), None);
    let reached =
        run_until(&mut sim, &mut room, Duration::from_secs(5), |sim, room| room.layers_of(sim, sub).current == Some(2));
    assert!(reached.is_some(), "never reached the top layer: {:?}", room.layers_of(&sim, sub));
    let before = room.layers_of(&sim, sub).switches;
    let mut changes = 0;
    let mut last = room.layers_of(&sim, sub).current;
    for _ in 0..150 {
        room.run(&mut sim, Duration::from_millis(100));
        let now = room.layers_of(&sim, sub).current;
        if now != last {
            changes += 1;
            last = now;
        }
    }
    let after = room.layers_of(&sim, sub);
    println!("3 % loss: {changes} layer changes in 15 s, {} switches; {after:?}", after.switches - before);
    assert_eq!(changes, 0, "the layer flapped under 3 % loss: {after:?}");
    assert_eq!(after.current, Some(2));
    let got = room.received(&sim, sub);
    assert!(by_sequence(&got)[0].keyframe);
}

#[test]
fn a_link_too_thin_for_any_video_layer_pauses_video_and_keeps_audio() {
    let mut sim = Sim::new(0x51_0003);
    let mut room = SimulcastRoom::setup(&mut sim, Signaled::Ssrcs, (Link::default(), Link::default()));
    // Audio (about 45 kbit/s on the wire) fits; the lowest video layer (150 kbit/s) does not.
    let thin = Link { rate_bps: Some(110_000), ..Link::default() };
    let sub = room.add_subscriber(&mut sim, (Link::default(), thin), None);
    let paused = run_until(&mut sim, &mut room, Duration::from_secs(10), |sim, room| {
        let l = room.layers_of(sim, sub);
        l.target.is_none() && l.current.is_none()
    });
    let layers = room.layers_of(&sim, sub);
    println!("thin link: video paused after {paused:?}: {layers:?}");
    assert!(paused.is_some(), "video not paused within 10 s on a link that cannot carry it: {layers:?}");
    assert!(layers.degraded, "paused by the bandwidth, not by the subscriber: {layers:?}");
    // Audio keeps flowing, nearly whole, while video is paused.
    let audio_ssrc = room.subscribers[sub].audio.ssrc;
    let client = room.subscribers[sub].client;
    let audio_before = sim.clients[client].client.received_on(audio_ssrc).len();
    let video_before = room.received(&sim, sub).len();
    room.run(&mut sim, Duration::from_secs(4));
    let audio = sim.clients[client].client.received_on(audio_ssrc).len() - audio_before;
    let video = room.received(&sim, sub).len() - video_before;
    println!("paused: {audio} audio packets received in 4 s (50 a second sent), {video} video packets");
    assert!(audio >= 190, "audio suffered while video was paused: {audio} of 200 packets in 4 s");
    assert!(video < 20, "video still sent while paused: {video} packets in 4 s");
    let l = room.layers_of(&sim, sub);
    assert!(l.target.is_none() && l.current.is_none(), "the pause did not hold: {l:?}");

    // The link widens: probing finds it and video resumes on a keyframe.
    let last_before = room.received(&sim, sub).iter().map(|g| g.seq).max().unwrap_or(0);
    sim.clients[client].down.rate_bps = None;
    let resumed =
        run_until(&mut sim, &mut room, Duration::from_secs(10), |sim, room| room.layers_of(sim, sub).current.is_some());
    let layers = room.layers_of(&sim, sub);
    println!("widened: video resumed after {resumed:?}: {layers:?}");
    assert!(resumed.is_some(), "video did not resume within 10 s of the link widening: {layers:?}");
    room.run(&mut sim, Duration::from_secs(1));
    let first = room.received(&sim, sub).into_iter().find(|g| g.seq > last_before);
    assert!(first.is_some_and(|g| g.keyframe), "the resumed video does not start on a keyframe: {first:?}");
}
