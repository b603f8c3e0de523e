//! End to end over real UDP on 127.0.0.1: the router's shards (real sockets, each I/O backend)
//! and four str0m clients. A publisher sends Opus and VP8; three subscribers complete ICE and
//! DTLS against the router, decrypt, and receive every frame in order with continuous
//! sequence numbers.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use integration_tests::client::str0m_extensions;
use integration_tests::media::{OpusStream, Vp8Stream, is_vp8_keyframe_start, tag};
use integration_tests::room::produce_params;
use integration_tests::wire::{LiveMedia, Peer, pump_all};
use router::Router;
use router::config::{Backend, Config};
use schema::RouterCommand;
use schema::api::{ConnectParams, ConsumeParams, ConsumerInfo, MediaKind, TransportInfo};
use schema::ids::{ProducerId, TransportId};

fn call<T: serde::de::DeserializeOwned>(router: &Router, cmd: RouterCommand) -> T {
    let v = router.call(cmd).expect("command succeeds");
    serde_json::from_value(v).expect("reply parses")
}

fn forwards_to_three_subscribers(backend: Backend) {
    let cfg = Config { shards: 1, base_port: 0, backend, pin: false, ..Config::default() };
    let mut router = Router::start(&cfg).expect("router starts");
    let expected_kind = match backend {
        Backend::Uring => router::io::BackendKind::Uring,
        _ => router::io::BackendKind::Mmsg,
    };
    assert_eq!(router.shard_backends(), vec![expected_kind]);

    let mut peers: Vec<Peer> = (0..4).map(|_| Peer::udp()).collect();
    let mut transports = Vec::new();
    for p in peers.iter_mut() {
        let info: TransportInfo = call(&router, RouterCommand::CreateTransport { shard: None });
        assert_eq!(info.udp_candidate().map(|a| a.ip()), Some("127.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        let params: ConnectParams = p.client.connect_to(&info);
        let _: serde_json::Value = call(&router, RouterCommand::ConnectTransport { transport: info.id, params });
        transports.push(info.id);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !peers.iter().all(|p| p.client.connected) {
        assert!(Instant::now() < deadline, "ICE/DTLS did not complete");
        pump_all(&mut peers, Duration::from_millis(10));
    }

    let audio_pub = peers[0].client.publish("a0", MediaKind::Audio);
    let video_pub = peers[0].client.publish("v0", MediaKind::Video);
    let audio: ProducerId = call(
        &router,
        RouterCommand::Produce { transport: transports[0], params: produce_params(MediaKind::Audio, &audio_pub) },
    );
    let video: ProducerId = call(
        &router,
        RouterCommand::Produce { transport: transports[0], params: produce_params(MediaKind::Video, &video_pub) },
    );
    let mut subs: Vec<(ConsumerInfo, ConsumerInfo)> = Vec::new();
    for (i, t) in transports.iter().enumerate().skip(1) {
        let consume = |producer, rtx| RouterCommand::Consume {
            transport: TransportId(t.0),
            params: ConsumeParams {
                producer,
                payload_type: None,
                rtx_payload_type: rtx,
                mid: None,
                extensions: str0m_extensions(),
                paused: false,
                preferred_layer: None,
            },
        };
        let (_, vrtx) = peers[i].client.payload_types(MediaKind::Video);
        let a: ConsumerInfo = call(&router, consume(audio, None));
        let v: ConsumerInfo = call(&router, consume(video, vrtx));
        peers[i].client.subscribe("a0", &a);
        peers[i].client.subscribe("v0", &v);
        subs.push((a, v));
    }

    // Five seconds of media in real time: Opus every 20 ms, VP8 at 30 fps with a keyframe first.
    let start = Instant::now();
    let mut media = LiveMedia::new(OpusStream::new(100, 4800), Vp8Stream::new(200, 9000), start);
    while Instant::now() < start + Duration::from_secs(5) {
        media.send_due(&mut peers[0].client, &audio_pub, &video_pub, Instant::now());
        pump_all(&mut peers, Duration::from_millis(2));
    }
    pump_all(&mut peers, Duration::from_millis(500));

    for (i, (a, v)) in subs.iter().enumerate() {
        let client = &peers[i + 1].client;
        for (info, what) in [(a, "audio"), (v, "video")] {
            let got = client.received_on(info.ssrc);
            assert!(!got.is_empty(), "subscriber {i} got no {what}");
            for w in got.windows(2) {
                assert_eq!(
                    w[1].seq,
                    w[0].seq.wrapping_add(1),
                    "subscriber {i}: {what} sequence numbers not continuous"
                );
                let (t0, t1) = (tag(&w[0].payload).unwrap(), tag(&w[1].payload).unwrap());
                assert!(t1 > t0, "subscriber {i}: {what} frames out of order: {t0:?} then {t1:?}");
            }
            let first = tag(&got[0].payload).unwrap().0;
            let last = tag(&got[got.len() - 1].payload).unwrap().0;
            let frames = if what == "audio" { media.opus.frame } else { media.vp8.frame };
            assert!(last + 3 >= frames, "subscriber {i}: {what} stopped at frame {last} of {frames}");
            println!("subscriber {i}: {what} frames {first}..={last} ({} packets)", got.len());
        }
        let video = client.received_on(v.ssrc);
        assert!(is_vp8_keyframe_start(&video[0].payload), "subscriber {i}: video did not start on a keyframe");
        // Every frame from the first one on, complete: 3 packets each.
        let first = tag(&video[0].payload).unwrap().0;
        assert_eq!(video.len() as u32, (media.vp8.frame - first) * 3, "subscriber {i}: missing video packets");
    }
    let counters: serde_json::Value = call(&router, RouterCommand::Counters { shard: Some(0) });
    println!("counters: {counters}");
    router.shutdown();
}

#[test]
fn forwards_to_three_subscribers_io_uring() {
    forwards_to_three_subscribers(Backend::Uring);
}

#[test]
fn forwards_to_three_subscribers_mmsg() {
    forwards_to_three_subscribers(Backend::Mmsg);
}
