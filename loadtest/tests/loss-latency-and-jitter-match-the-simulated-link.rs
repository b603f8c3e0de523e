//! The tool's loss, one-way latency and jitter against a simulated link whose truth is known:
//! 20 ms up, 30 ms down plus up to 10 ms of uniform jitter, 5 % of downlink datagrams lost.
//! The subscriber does not NACK audio (as browsers do not for Opus), so every loss stays lost.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use integration_tests::room::Room;
use integration_tests::sim::{Link, Sim};
use loadtest::Clock;
use loadtest::stats::Summary;

#[test]
fn loss_latency_and_jitter_match_the_link() {
    let mut sim = Sim::new(11);
    let down =
        Link { latency: Duration::from_millis(30), jitter: Duration::from_millis(10), loss: 0.05, ..Link::default() };
    // A second subscriber on a clean link: no loss and constant delay.
    let mut room = Room::setup(&mut sim, 1, (Link::default(), Link::default()), (Link::default(), down));
    room.add_subscriber(&mut sim, (Link::default(), Link::default()));
    for sub in &room.subscribers {
        let ssrc = str0m::rtp::Ssrc::from(sub.audio.ssrc);
        sim.client(sub.client).rtc.direct_api().stream_rx(&ssrc).unwrap().suppress_nack(true);
    }
    let clock = Clock::new(sim.start);
    let mut sender = common::Sender::default();
    sender.run(&mut sim, &mut room, &clock, Duration::from_secs(30));
    // The last second is clean, so the final packets arrive and the sequence range is whole.
    let lossy = room.subscribers[0].client;
    sim.clients[lossy].down.loss = 0.0;
    sender.run(&mut sim, &mut room, &clock, Duration::from_secs(1));
    sim.run_for(Duration::from_millis(500));

    let t = common::account(&sim, lossy, room.subscribers[0].audio.ssrc, false, &clock);
    // Every packet the publisher sent was forwarded: the range is exactly what was sent.
    assert_eq!(t.expected(), sender.sent_audio);
    let delivered = sim.clients[lossy].client.received_on(room.subscribers[0].audio.ssrc).len() as u64;
    assert_eq!(t.lost(), sender.sent_audio - delivered);
    let loss = t.loss_fraction();
    assert!((0.03..0.07).contains(&loss), "loss {loss} on a 5 % link over {} packets", t.expected());

    // One-way latency: 20 ms up + 30 ms down + jitter in [0, 10) ms.
    let mut ms: Vec<f64> = t.latency_us.iter().map(|l| f64::from(*l) / 1000.0).collect();
    let s = Summary::of(&mut ms);
    // Nothing arrives sooner than the links allow; a few packets wait a pacing tick longer.
    assert!(s.min >= 50.0 && s.p99 < 60.5 && s.max < 75.0, "latency {s:?}");
    assert!((53.0..57.0).contains(&s.p50), "median of uniform jitter is its middle: {s:?}");
    // RFC 3550 jitter of a uniform [0, J) delay tends to J/3.
    assert!((2.3..4.5).contains(&(t.jitter_us / 1000.0)), "jitter {} ms, expected ≈ 3.3", t.jitter_us / 1000.0);

    let clean = common::account(&sim, room.subscribers[1].client, room.subscribers[1].audio.ssrc, false, &clock);
    assert_eq!((clean.expected(), clean.lost()), (sender.sent_audio, 0));
    let mut ms: Vec<f64> = clean.latency_us.iter().map(|l| f64::from(*l) / 1000.0).collect();
    let s = Summary::of(&mut ms);
    assert!(s.min >= 40.0 && s.p50 < 40.5 && s.max < 60.0, "20 + 20 ms: {s:?}");
    assert!(clean.jitter_us < 200.0, "constant delay, jitter {} µs", clean.jitter_us);
}
