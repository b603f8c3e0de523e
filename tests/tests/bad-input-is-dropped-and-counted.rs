//! Garbage of every kind from the network is dropped and counted, never a panic, and the media
//! of well-behaved clients keeps flowing through it.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::time::Duration;

use integration_tests::room::Room;
use integration_tests::sim::{Link, Sim};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use router_engine::stun;

fn setup() -> (Sim, Room) {
    let mut sim = Sim::new(0x5eed_0006);
    let link = (Link::default(), Link::default());
    let mut room = Room::setup(&mut sim, 1, link, link);
    room.run(&mut sim, Duration::from_secs(1));
    (sim, room)
}

fn video_received(sim: &Sim, room: &Room) -> usize {
    let sub = &room.subscribers[0];
    sim.clients[sub.client].client.received_on(sub.video.ssrc).len()
}

#[test]
fn random_truncated_and_oversized_datagrams() {
    let (mut sim, mut room) = setup();
    let stranger: SocketAddr = "10.9.9.9:9".parse().unwrap();
    let publisher = sim.clients[room.publisher].client.local;
    let mut rng = StdRng::seed_from_u64(1);
    for i in 0..20_000 {
        let len = rng.random_range(0..1600);
        let mut data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        // Steer a share of them into each parser: STUN, DTLS, RTP/RTCP.
        if let Some(first) = data.first_mut() {
            *first = match i % 4 {
                0 => *first & 0x03,
                1 => 20 + (*first % 44),
                2 => 128 + (*first % 64),
                _ => *first,
            };
        }
        // From a known address too, so SRTP and DTLS parsing is reached.
        let src = if (i / 4) % 2 == 0 { stranger } else { publisher };
        sim.inject(src, data);
    }
    sim.inject(publisher, Vec::new());
    sim.inject(publisher, vec![0u8; 65_535]);
    sim.inject(publisher, vec![0x80; 65_535]);
    let c = sim.engine.counters().clone();
    println!("{c:?}");
    assert!(c.stun_malformed > 0);
    assert!(c.dtls_unknown_address > 0);
    assert!(c.srtp_unknown_address > 0);
    assert!(c.srtp_auth_failed > 0);

    let before = video_received(&sim, &room);
    room.run(&mut sim, Duration::from_secs(1));
    assert!(video_received(&sim, &room) > before + 60, "media stopped flowing after garbage");
}

#[test]
fn stun_with_wrong_integrity_or_unknown_ufrag_is_refused() {
    let (mut sim, room) = setup();
    let publisher = sim.clients[room.publisher].client.local;
    let info_ufrag = {
        // A fresh transport whose ufrag we know.
        sim.engine.create_transport(sim.now).expect("transport").ice_ufrag
    };
    let mut buf = [0u8; 512];
    let username = format!("{info_ufrag}:remote");
    let n = stun::write_binding_request(
        [7; 12],
        username.as_bytes(),
        b"not-the-password-at-all",
        1,
        Some(1),
        true,
        &mut buf,
    )
    .expect("request fits");
    let before = sim.engine.counters().clone();
    sim.inject(publisher, buf[..n].to_vec());
    let replies = sim.take_router_output();
    let after = sim.engine.counters().clone();
    assert_eq!(after.stun_rejected, before.stun_rejected + 1);
    let (_, reply) = replies.first().expect("a 401 error response");
    let msg = stun::parse(reply).expect("response parses");
    assert_eq!(msg.error_code().map(|e| e.code), Some(401));

    let n = stun::write_binding_request([8; 12], b"nobody:remote", b"pwd", 1, Some(1), true, &mut buf).expect("fits");
    sim.inject(publisher, buf[..n].to_vec());
    assert_eq!(sim.engine.counters().stun_unknown_ufrag, after.stun_unknown_ufrag + 1);
    // Truncated: cut a valid request short.
    sim.inject(publisher, buf[..n - 7].to_vec());
    assert!(sim.engine.counters().stun_malformed > after.stun_malformed);
}

#[test]
fn tampered_and_replayed_srtp_and_stray_dtls() {
    let (mut sim, room) = setup();
    let publisher = room.publisher;
    let src = sim.clients[publisher].client.local;
    // Make the publisher send one more audio packet and catch it before the network does.
    let p = room.audio_pub.clone();
    let now = sim.now;
    sim.client(publisher).send(&p, now, 999_999, 1, false, &[0x60; 50]);
    let out = sim.client(publisher).poll(now);
    let srtp: Vec<Vec<u8>> =
        out.into_iter().map(|(_, d)| d).filter(|d| (128..192).contains(&d[0]) && !(192..224).contains(&d[1])).collect();
    let packet = srtp.first().expect("publisher sent an SRTP packet").clone();

    let c0 = sim.engine.counters().clone();
    let mut tampered = packet.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x55;
    sim.inject(src, tampered);
    let c1 = sim.engine.counters().clone();
    assert_eq!(c1.srtp_auth_failed, c0.srtp_auth_failed + 1, "tampered packet not refused");

    sim.inject(src, packet.clone());
    sim.inject(src, packet);
    let c2 = sim.engine.counters().clone();
    assert_eq!(c2.srtp_replayed, c1.srtp_replayed + 1, "replay not refused");

    // A DTLS record from an address that never passed an ICE check.
    let stranger: SocketAddr = "10.9.9.8:4444".parse().unwrap();
    sim.inject(stranger, vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(sim.engine.counters().dtls_unknown_address, c2.dtls_unknown_address + 1);
}
