//! The router's per-packet cost on its packet path: one SRTP video packet from a publisher goes
//! through `Engine::handle_datagram` — SRTP unprotect, RTP parse, producer lookup, NACK/stats/
//! RTX-cache bookkeeping, then for each of F subscribers a fresh header with its own SSRC,
//! sequence number, timestamp and extensions, SRTP protect straight into the send buffer —
//! for fan-out F = 1, 10 and 100. The sockets are left out (see MEASUREMENTS.md for the kernel
//! UDP path), so this is the user-space work the planning figures there leave a margin for.
//!
//! The engine and its clients are real: str0m peers complete ICE and DTLS against the engine
//! on the simulated network first, and the publisher's str0m encrypts the packets (in the
//! untimed setup), so replay protection and ROC tracking do their real work.
//!
//! `cargo bench -p benches --bench forward -j2`; throughput is per forwarded packet.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use integration_tests::room::Room;
use integration_tests::sim::{Link, Sim};
use router_engine::{MTU, Transmit};

/// A send buffer that only counts: the kernel's share is measured elsewhere.
struct CountingSink {
    buf: Vec<u8>,
    sent: u64,
}

impl Transmit for CountingSink {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    fn commit(&mut self, _dst: SocketAddr, _len: usize) {
        self.sent += 1;
    }
}

/// A room with `fanout` subscribers whose consumers are all started (a keyframe went through).
fn room(fanout: usize) -> (Sim, Room) {
    let mut sim = Sim::new(fanout as u64);
    let link = (Link::default(), Link::default());
    let mut room = Room::setup(&mut sim, fanout, link, link);
    room.video.payload_size = 1130; // ~1200 bytes on the wire with header, extensions and tag
    room.run(&mut sim, Duration::from_millis(500));
    let idle: Vec<_> = room
        .subscribers
        .iter()
        .filter(|s| sim.engine.consumer_stats(s.video.id).is_none_or(|st| st.packets == 0))
        .map(|s| s.client)
        .collect();
    assert!(idle.is_empty(), "subscribers {idle:?} of {fanout} got no video during setup");
    (sim, room)
}

/// The publisher's next encrypted RTP datagrams to the router, made by str0m.
fn next_datagrams(sim: &mut Sim, room: &mut Room, out: &mut Vec<Vec<u8>>) {
    let publication = room.video_pub.clone();
    let publisher = room.publisher;
    for _ in 0..64 {
        sim.now += Duration::from_micros(100);
        let now = sim.now;
        for p in room.video.next_frame() {
            sim.client(publisher).send(&publication, now, p.seq, p.ts, p.marker, &p.payload);
        }
        for (_, d) in sim.client(publisher).poll(now) {
            // RTP only (RFC 5761: RTCP packet types sit at 192..=223 in the second byte).
            if (128..192).contains(&d[0]) && !(192..224).contains(&d[1]) && d.len() > 1000 {
                out.push(d);
            }
        }
    }
}

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward");
    group.measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    for fanout in [1usize, 10, 100] {
        let (sim, mut room) = room(fanout);
        let src = sim.clients[room.publisher].client.local;
        // Setup (the publisher) and routine (the engine) both need the simulation, one after
        // the other; a RefCell says so.
        let sim = std::cell::RefCell::new(sim);
        let mut pool: Vec<Vec<u8>> = Vec::new();
        let mut sink = CountingSink { buf: vec![0; MTU], sent: 0 };
        let mut calls = 0u64;
        let before = sim.borrow().engine.counters().forwarded;
        group.throughput(Throughput::Elements(fanout as u64));
        group.bench_function(format!("unprotect_route_protect/fanout_{fanout}"), |b| {
            b.iter_batched(
                || {
                    if pool.is_empty() {
                        next_datagrams(&mut sim.borrow_mut(), &mut room, &mut pool);
                        pool.reverse();
                    }
                    // The pool is refilled above whenever it runs dry.
                    pool.pop().expect("publisher produced packets")
                },
                |mut datagram| {
                    let sim = &mut *sim.borrow_mut();
                    sim.engine.handle_datagram(sim.now, src, &mut datagram, &mut sink);
                    calls += 1;
                },
                BatchSize::SmallInput,
            )
        });
        let sim = sim.borrow();
        let c = sim.engine.counters();
        if calls == 0 {
            continue; // filtered out on the command line
        }
        eprintln!("fan-out {fanout}: {calls} packets in, {} out", sink.sent);
        // The measurement is only meaningful if the packets were really forwarded.
        assert!(c.forwarded > before, "nothing was forwarded: {c:?}");
        assert_eq!(c.srtp_replayed + c.srtp_auth_failed, 0, "packets were refused: {c:?}");
        // Every packet went to every subscriber (a few RTCP reports ride along).
        assert!(sink.sent >= calls * fanout as u64, "{} sends for {calls} packets at fan-out {fanout}", sink.sent);
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
