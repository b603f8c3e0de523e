//! A publisher's RTX copy of a packet the router already has is dropped and counted, not
//! forwarded: Chromium probes its uplink with such copies ("redundant payload" padding), and
//! forwarded they reach subscribers as duplicates that SRTP's replay check drops before the
//! congestion feedback sees them, which the subscriber's estimate reads as heavy loss. An RTX
//! packet that repairs a real gap is forwarded.
//!
//! The publisher's str0m sends the RTX stream by hand: its own RTX stays off, and a second
//! stream with the producer's RTX SSRC carries `OSN + original payload`.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::client::{Publication, str0m_extensions};
use integration_tests::media::Vp8Stream;
use integration_tests::room::produce_params;
use integration_tests::sim::{Link, Sim};
use schema::api::{ConsumeParams, MediaKind};
use str0m::media::{MediaKind as StrKind, Mid};

#[test]
fn rtx_copies_of_packets_already_received_are_dropped_and_gaps_are_repaired() {
    let mut sim = Sim::new(0xd0_0001);
    let (publisher, pub_transport) = sim.add_client(Link::default(), Link::default());
    let (pt, rtx_pt) = sim.client(publisher).payload_types(MediaKind::Video);
    let rtx_pt = rtx_pt.unwrap();
    let (video, rtx) = {
        let mut api = sim.client(publisher).rtc.direct_api();
        let mid: Mid = "v0".into();
        let rtx_mid: Mid = "v1".into();
        api.declare_media(mid, StrKind::Video);
        api.declare_media(rtx_mid, StrKind::Video);
        let ssrc = api.new_ssrc();
        let rtx_ssrc = api.new_ssrc();
        api.declare_stream_tx(ssrc, None, mid, None);
        api.declare_stream_tx(rtx_ssrc, None, rtx_mid, None);
        (
            Publication { mid, ssrc: *ssrc, rtx_ssrc: Some(*rtx_ssrc), pt, rtx_pt: Some(rtx_pt) },
            // str0m sends only the main payload type on a stream of its own; the router tells RTX
            // by the SSRC.
            Publication { mid: rtx_mid, ssrc: *rtx_ssrc, rtx_ssrc: None, pt, rtx_pt: None },
        )
    };
    let producer = sim.engine.produce(pub_transport.id, produce_params(MediaKind::Video, &video)).unwrap();
    let (subscriber, sub_transport) = sim.add_client(Link::default(), Link::default());
    let consumer = sim
        .engine
        .consume(
            sub_transport.id,
            ConsumeParams {
                producer,
                payload_type: None,
                rtx_payload_type: Some(rtx_pt),
                mid: Some("v0".into()),
                extensions: str0m_extensions(),
                paused: false,
                preferred_layer: None,
            },
        )
        .unwrap();
    sim.client(subscriber).subscribe("v0", &consumer);

    let mut stream = Vp8Stream::new(1000, 90_000);
    let mut sent = BTreeMap::new();
    let mut rtx_seq = 0u64;
    let mut skipped = None;
    for frame in 0..60 {
        let now = sim.now;
        for p in stream.next_frame() {
            sent.insert(p.seq, p.clone());
            // One packet never goes out on the media stream: only its RTX copy repairs it.
            if frame == 30 && skipped.is_none() {
                skipped = Some(p.seq);
                continue;
            }
            sim.client(publisher).send(&video, now, p.seq, p.ts, p.marker, &p.payload);
        }
        // Every few frames, RTX copies of the last packets, as Chromium's padding does; and the
        // repair of the skipped packet right after it was skipped.
        let copies: Vec<u64> = if frame == 30 {
            vec![skipped.unwrap()]
        } else if frame % 3 == 0 {
            sent.keys().rev().take(2).copied().collect()
        } else {
            Vec::new()
        };
        for seq in copies {
            let p = &sent[&seq];
            let mut payload = (seq as u16).to_be_bytes().to_vec();
            payload.extend_from_slice(&p.payload);
            sim.client(publisher).send(&rtx, now, rtx_seq, p.ts, p.marker, &payload);
            rtx_seq += 1;
        }
        sim.run_until(now + Duration::from_micros(33_333));
    }
    sim.run_until(sim.now + Duration::from_millis(500));

    let counters = sim.engine.counters().clone();
    let received =
        sim.clients[subscriber].client.received_on(consumer.ssrc).into_iter().map(|r| r.ext_seq).collect::<Vec<_>>();
    let mut unique = received.clone();
    unique.sort_unstable();
    unique.dedup();
    println!(
        "duplicates dropped {}, received {} packets ({} distinct) of {} sent",
        counters.rtp_duplicates,
        received.len(),
        unique.len(),
        sent.len()
    );
    assert!(counters.rtp_duplicates >= 38, "RTX copies of packets the router had must be dropped: {counters:?}");
    assert_eq!(received.len(), unique.len(), "the subscriber got duplicates");
    assert_eq!(unique.len(), sent.len(), "every packet arrived once, the repaired one included");
    let srtp = counters.srtp_replayed;
    assert_eq!(srtp, 0, "{counters:?}");
}
